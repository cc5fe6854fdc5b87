"""A segment's population over time, with its playbook runs marked on the chart and listed with
their performance and outcome against the holdout."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from console.app.screens.base import ConsoleScreen
from console.app.widgets.text import clean, moment, number, plain
from store.reports import ReportSettings, RunReport, percent, population_series, run_report, segment_runs

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS
# Runs marked and listed at most: the latest ones of the time range.
RUN_LIMIT = 20


@dataclass(frozen=True)
class TimeRange:
    """A span of time back from now, and the unit of the chart's x axis."""

    label: str
    span_ms: int
    unit: str
    unit_ms: int


# The ranges that `t` cycles through, the first one shown first.
RANGES = (
    TimeRange("30 days", 30 * _DAY_MS, "days", _DAY_MS),
    TimeRange("7 days", 7 * _DAY_MS, "days", _DAY_MS),
    TimeRange("24 hours", _DAY_MS, "hours", _HOUR_MS),
    TimeRange("1 hour", _HOUR_MS, "minutes", _MINUTE_MS),
    TimeRange("90 days", 90 * _DAY_MS, "days", _DAY_MS),
)
RUN_COLUMNS = (
    ("run", "Run", 6), ("playbook", "Playbook", 26), ("created", "Created (UTC)", 16), ("sent", "Sent", 6),
    ("delivered", "Delivered", 9), ("open", "Open", 6), ("cta", "CTA", 6), ("treated", "Treated", 15),
    ("held_out", "Held out", 15), ("difference", "Δ pp [95% CI]", 26),
)


class ChartLoaded(Message):
    """A segment's population series and runs over one time range up to `until`, from a worker thread."""

    def __init__(self, time_range: TimeRange, until: int, points: list[tuple[int, int]],
                 reports: list[RunReport]) -> None:
        super().__init__()
        self.time_range = time_range
        self.until = until
        self.points = points
        self.reports = reports


class SegmentChartScreen(ConsoleScreen):
    """One segment's population over time with its runs as vertical markers labelled "#id"."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="chart.back"),
        Binding("t", "cycle_range", "Time range", id="chart.range"),
        Binding("r", "refresh", "Refresh", id="chart.refresh"),
    ]

    DEFAULT_CSS = """
    #chart-plot {
        height: 1fr;
        min-height: 12;
    }
    #chart-runs {
        height: auto;
        max-height: 12;
        border: round $primary 50%;
        border-title-style: bold;
    }
    #chart-header {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, segment: str, reporting: ReportSettings | None = None,
                 crumbs: tuple[str, ...] = ("Dashboard", "Health")) -> None:
        super().__init__((*crumbs, segment))
        self.segment = segment
        self.reporting = reporting or ReportSettings()
        self.time_range = RANGES[0]
        self.points: list[tuple[int, int]] = []
        self.reports: list[RunReport] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"{self.segment}: loading…", style="dim"), id="chart-header")
        yield PlotextPlot(id="chart-plot")
        runs = DataTable(id="chart-runs", cursor_type="row", zebra_stripes=True)
        runs.border_title = "Runs in the range, newest first"
        yield runs
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#chart-runs", DataTable)
        for key, label, width in RUN_COLUMNS:
            table.add_column(label, key=key, width=width)
        self.load()

    def action_cycle_range(self) -> None:
        self.time_range = RANGES[(RANGES.index(self.time_range) + 1) % len(RANGES)]
        self.load()

    def action_refresh(self) -> None:
        self.load()

    def load(self) -> None:
        """Read the series and the runs of the current time range on a worker thread."""
        self._query(self.time_range, self.app.clock())

    @work(thread=True, exclusive=True, group="chart", exit_on_error=False, name="segment chart")
    def _query(self, time_range: TimeRange, until: int) -> None:
        since = until - time_range.span_ms
        with self.app.reader() as connection:
            points = population_series(connection, self.segment, since=since, until=until)
            reports = [
                run_report(connection, run.id, self.app.settings, self.reporting, now=until)
                for run in segment_runs(connection, self.segment, since=since, limit=RUN_LIMIT)
            ]
        self.post_message(ChartLoaded(time_range, until, points, [report for report in reports if report]))

    def on_chart_loaded(self, message: ChartLoaded) -> None:
        if message.time_range != self.time_range:
            return
        self.points, self.reports = message.points, message.reports
        self._draw(message.until)
        self._fill_runs()
        self._show_header()

    def _draw(self, until: int) -> None:
        time_range = self.time_range
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.title(f"{self.segment}: population over the last {time_range.label}")
        plt.xlabel(f"{time_range.unit} before now")
        plt.xlim(-time_range.span_ms / time_range.unit_ms, 0)
        xs = [(taken_at - until) / time_range.unit_ms for taken_at, _ in self.points]
        ys = [population for _, population in self.points]
        if self.points:
            plt.plot(xs, ys, marker="braille", color="cyan")
        top = max(ys, default=1)
        for report in self.reports:
            x = (report.run.created_at - until) / time_range.unit_ms
            plt.vertical_line(x, color="red")
            plt.text(clean(f"#{report.run.id}"), x, top, color="red")
        plot.refresh()

    def _fill_runs(self) -> None:
        table = self.query_one("#chart-runs", DataTable)
        table.clear()
        for report in self.reports:
            run, performance, outcome = report.run, report.performance, report.outcome
            difference = outcome.describe_difference() + (" …" if outcome.window_open_until else "")
            table.add_row(
                plain(f"#{run.id}", style="bold"), plain(run.playbook), moment(run.created_at)[:16],
                number(performance.sent), number(performance.delivered), percent(performance.open_rate),
                percent(performance.cta_rate), outcome.treated.describe(), outcome.held_out.describe(),
                plain(difference), key=str(run.id),
            )

    def _show_header(self) -> None:
        header = Text(end="")
        header.append(self.segment, style="bold")
        header.append(f"  │  last {self.time_range.label}, t switches the range", style="dim")
        if self.points:
            first, last = self.points[0][1], self.points[-1][1]
            header.append(f"  │  {number(first)} → {number(last)}")
        else:
            header.append("  │  no snapshot in this range", style="yellow")
        header.append(f"  │  {len(self.reports)} runs marked", style="dim")
        if self.reports:
            header.append("\noutcome of the latest run: ", style="dim")
            header.append(plain(self.reports[0].outcome.outcome))
        self.query_one("#chart-header", Static).update(header)
