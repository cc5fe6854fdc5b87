"""The health screen: every segment's population, changes, trend and freshness, with the latest run
of its playbooks, that run's performance and its outcome against the holdout."""

from __future__ import annotations

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from console.app.screens.base import ConsoleScreen
from console.app.screens.segment_chart import SegmentChartScreen
from console.app.widgets.sparkline import sparkline
from console.app.widgets.text import age, moment, number, plain
from store import segments as seg
from store.reports import HealthRow, OutcomeComparison, ReportSettings, health_rows, percent, span_words

# Seconds between re-reads, so that a run's email events and outcomes appear as the sync brings them.
RELOAD_SECONDS = 10.0
TREND_WIDTH = 9
# Column key, header label and width in cells. The detail pane under the table spells out the
# highlighted row, so the cells stay short.
COLUMNS = (
    ("segment", "Segment", 23),
    ("population", "Population", 10),
    ("day", "Δ 24h", 7),
    ("week", "Δ 7d", 7),
    ("trend", "Trend", TREND_WIDTH),
    ("run", "Latest run", 12),
    ("sent", "Sent", 5),
    ("open", "Open", 6),
    ("cta", "CTA", 6),
    ("treated", "Treated", 7),
    ("held_out", "Held out", 8),
    ("difference", "Δ pp [95% CI]", 22),
    ("fresh", "Snapshot", 8),
)


class HealthLoaded(Message):
    """The health rows, computed on a worker thread at `t`."""

    def __init__(self, rows: list[HealthRow], t: int) -> None:
        super().__init__()
        self.rows = rows
        self.t = t


class HealthTable(DataTable):
    """One row per segment. Enter opens the segment's population chart."""

    BINDINGS = [Binding("enter", "select_cursor", "Open chart", id="health.open")]


def change_cell(value: int | None) -> Text:
    """Format a population change with an up or down mark: "▲ 12" in green, "▼ 3" in red."""
    if value is None:
        return Text("–", style="dim", end="")
    if value > 0:
        return Text(f"▲ {value:,}", style="green", end="")
    if value < 0:
        return Text(f"▼ {-value:,}", style="red", end="")
    return Text("0", style="dim", end="")


def difference_cell(outcome: OutcomeComparison) -> Text:
    """Format the difference and its interval, green when the interval is above 0 and red when
    below it, or "too few users" dimmed."""
    if outcome.too_few_users:
        return Text("too few users", style="dim italic", end="")
    low, high = outcome.ci_pp
    style = ""
    if low > 0:
        style = "green"
    elif high < 0:
        style = "red"
    text = outcome.describe_difference().replace(" pp", "")
    return Text(text + (" …" if outcome.window_open_until else ""), style=style, end="")


class HealthScreen(ConsoleScreen):
    """Every segment's health and the performance of its latest playbook run.

    `reporting` gives the CTA event, the windows, the minimum users per arm and the playbooks'
    outcomes, from the configuration's `reporting` attribute.
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="health.back"),
        Binding("r", "refresh", "Refresh", id="health.refresh"),
    ]

    AUTO_FOCUS = "#health-table"

    DEFAULT_CSS = """
    #health-table {
        height: auto;
        max-height: 16;
        border: round $primary 50%;
        border-title-style: bold;
    }
    #health-table:focus {
        border: round $primary;
    }
    #health-header, #health-detail {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, reporting: ReportSettings | None = None, crumbs: tuple[str, ...] = ("Dashboard",)) -> None:
        super().__init__((*crumbs, "Health"))
        self.reporting = reporting or ReportSettings()
        self.rows: dict[str, HealthRow] = {}
        self.loaded_at: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._header(), id="health-header")
        table = HealthTable(id="health-table", cursor_type="row", zebra_stripes=True)
        table.border_title = "Segments, their latest playbook run and its outcome against the holdout"
        yield table
        yield Static(id="health-detail")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(HealthTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        for definition in seg.ALL_SEGMENTS:
            cells = [Text(definition.name, style="bold")] + [Text("…", style="dim")] + [""] * (len(COLUMNS) - 2)
            table.add_row(*cells, key=definition.name)
        self.load()
        self.set_interval(RELOAD_SECONDS, self.load)

    def action_refresh(self) -> None:
        self.load()

    def load(self) -> None:
        """Re-read the health rows on a worker thread."""
        self._query(self.app.clock())

    @work(thread=True, exclusive=True, group="health", exit_on_error=False, name="health report")
    def _query(self, t: int) -> None:
        # One run's performance and outcome per segment: a few indexed queries each.
        with self.app.reader() as connection:
            rows = health_rows(connection, self.app.settings, self.reporting, now=t,
                               stale_after_ms=int(self.app.stale_after * 1000))
        self.post_message(HealthLoaded(rows, t))

    def on_health_loaded(self, message: HealthLoaded) -> None:
        self.rows = {row.segment: row for row in message.rows}
        self.loaded_at = message.t
        table = self.query_one(HealthTable)
        for row in message.rows:
            for key, value in self._cells(row, message.t).items():
                table.update_cell(row.segment, key, value)
        self.show_detail()

    def _cells(self, row: HealthRow, t: int) -> dict[str, Text | str]:
        population = Text(number(row.population), style="dim" if row.stale else "bold", end="")
        cells: dict[str, Text | str] = {
            "population": population,
            "day": change_cell(row.change_24h),
            "week": change_cell(row.change_7d),
            "trend": Text(sparkline(row.history, TREND_WIDTH), style="dim" if row.stale else "cyan", end=""),
            "fresh": Text("stale", style="italic yellow", end="") if row.stale
            else Text(age(t - row.snapshot_at) if row.snapshot_at is not None else "none", style="dim", end=""),
        }
        latest = row.latest
        if latest is None:
            cells.update(run=Text("no run", style="dim", end=""), sent="", open="", cta="", treated="",
                         held_out="", difference="")
            return cells
        performance, outcome = latest.performance, latest.outcome
        cells.update(
            run=plain(f"#{latest.run.id} · {age(t - latest.run.created_at)}"),
            sent=number(performance.sent),
            open=percent(performance.open_rate),
            cta=percent(performance.cta_rate),
            treated=percent(outcome.treated.rate),
            held_out=percent(outcome.held_out.rate),
            difference=difference_cell(outcome),
        )
        return cells

    # The detail pane.

    @on(DataTable.RowHighlighted, "#health-table")
    def row_highlighted(self) -> None:
        self.show_detail()

    @on(events.DescendantFocus)
    def table_focused(self) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """Spell out the highlighted segment: its run, performance, outcome and freshness."""
        table = self.query_one(HealthTable)
        if table.row_count == 0:
            return
        segment = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        row = self.rows.get(segment)
        detail = self.query_one("#health-detail", Static)
        if row is None or self.loaded_at is None:
            detail.update(Text(f"{segment}: loading…", style="dim"))
            return
        detail.update(health_detail(row, self.loaded_at))

    @on(DataTable.RowSelected, "#health-table")
    def open_chart(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(SegmentChartScreen(str(event.row_key.value), self.reporting, self.crumbs))

    def _header(self) -> Text:
        header = Text(end="")
        header.append("Open", style="bold")
        header.append(" opened / delivered  ", style="dim")
        header.append("CTA", style="bold")
        header.append(f" {self.reporting.cta_event} within {span_words(self.reporting.cta_window_ms)} "
                      "of delivery / delivered  ", style="dim")
        header.append("Δ pp", style="bold")
        header.append(" treated minus held out, 95% CI by Newcombe's hybrid score method; … the outcome "
                      "window is still open", style="dim")
        return header


def health_detail(row: HealthRow, t: int) -> Text:
    """Describe one health row in full sentences, for the pane under the table."""
    definition = seg.BY_NAME[row.segment]
    detail = Text(end="")
    detail.append(row.segment, style="bold")
    detail.append(f"  {definition.kind} segment of {definition.entity}s  │  {number(row.population)} now",
                  style="dim")
    if row.snapshot_at is not None:
        detail.append(f", snapshot {moment(row.snapshot_at)} UTC", style="dim")
    if row.stale:
        detail.append("  stale: the feed has not delivered lately", style="italic yellow")
    latest = row.latest
    if latest is None:
        detail.append("\nNo playbook of this segment has run yet.", style="dim")
        return detail

    run, performance, outcome = latest.run, latest.performance, latest.outcome
    detail.append("\nrun ", style="dim")
    detail.append(plain(f"#{run.id} {run.playbook}", style="bold"))
    detail.append(" by ", style="dim")
    detail.append(plain(run.operator))
    detail.append(f" on {run.target_kind} ", style="dim")
    detail.append(plain(run.target_id))
    detail.append(f", {moment(run.created_at)} UTC ({age(t - run.created_at)} ago)", style="dim")
    detail.append(f"\n{number(performance.sent)} sent, {number(performance.delivered)} delivered, "
                  f"{number(performance.opened)} opened ({percent(performance.open_rate)}), "
                  f"{number(performance.clicked)} clicked, CTA completion {percent(performance.cta_rate)}")
    detail.append("\noutcome ", style="dim")
    detail.append(plain(outcome.outcome))
    detail.append(f"\ntreated {outcome.treated.describe()} against held out {outcome.held_out.describe()}: ")
    detail.append_text(difference_cell(outcome))
    if outcome.window_open_until is not None:
        detail.append(f"  (window open until {moment(outcome.window_open_until)} UTC)", style="dim")
    return detail

