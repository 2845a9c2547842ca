"""The dashboard of the twin's own processes (not the simulated fleet): virtual time, pace and
lag, windows, bus traffic, rejections. One of :data:`llmtwin.observe.dashboards.DASHBOARDS`."""

from __future__ import annotations

from llmtwin.observe.panel_builders import RI
from llmtwin.observe.panels import Dashboard, Panel, Query, Row

HEALTH = Dashboard(
    "llmtwin-health",
    "llmtwin / Twin health",
    "The twin's own processes: virtual time, pace and lag, windows, bus traffic, rejections.",
    (
        Row(
            "Virtual time",
            (
                Panel(
                    "Virtual time",
                    (Query("max(twin_conductor_virtual_time_seconds)", "virtual time"),),
                    unit="s",
                    description="Virtual time of the current window",
                    width=8,
                ),
                Panel(
                    "Speed",
                    (
                        Query("max(twin_conductor_speed_ratio)", "achieved"),
                        Query("max(twin_conductor_pace_ratio)", "requested (0 = max)"),
                    ),
                    description="Virtual seconds per wall second",
                    width=8,
                ),
                Panel(
                    "Lag behind the pace",
                    (Query("max(twin_conductor_realtime_lag_seconds)", "lag"),),
                    unit="s",
                    description="Wall seconds the run is behind --speed",
                    width=8,
                ),
            ),
        ),
        Row(
            "Windows and bus",
            (
                Panel(
                    "Windows per second",
                    (Query(f"sum(rate(twin_conductor_windows_total{RI}))", "windows/s"),),
                    description="Virtual-time windows opened per wall second",
                    width=8,
                ),
                Panel(
                    "Window duration (p99)",
                    (
                        Query(
                            f"histogram_quantile(0.99, sum by (le) (rate(twin_conductor_window_duration_seconds_bucket{RI})))",
                            "p99",
                        ),
                    ),
                    unit="s",
                    description="Wall time from opening a window to the last Done",
                    width=8,
                ),
                Panel(
                    "Bus rejections per second",
                    (
                        Query(
                            f"sum by (service, reason) (rate(twin_bus_rejected_total{RI}))",
                            "{{service}} {{reason}}",
                        ),
                    ),
                    description="Messages rejected, by service and reason",
                    width=8,
                ),
                Panel(
                    "Bus messages per second",
                    (
                        Query(
                            f"sum by (service, direction) (rate(twin_bus_messages_total{RI}))",
                            "{{service}} {{direction}}",
                        ),
                    ),
                    description="Messages handled, by service and direction",
                ),
                Panel(
                    "Services up",
                    (Query("twin_service_up", "{{service}}"),),
                    kind="stat",
                    description="1 while each service is started",
                ),
            ),
        ),
    ),
)
