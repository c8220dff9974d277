"""The reports of a run: summary.json + requirements.csv (``summary``), report.html
(``html``), junit.xml test-case names (``junit``) and the terminal summary (``console``)."""
