"""modelberth's Grafana dashboards as typed Python (Grafana's grafana-foundation-sdk), and their PromQL.

``queries`` names every query once, ``panels`` holds the house style of each panel kind, ``dashboards``
lays the three dashboards out. ``python -m modelberth_monitoring`` writes them to the chart
(``charts/modelberth/files/dashboards/``), the one copy Helm reads; ``--check`` fails when the committed
files differ from what the code generates (issue 16).
"""
