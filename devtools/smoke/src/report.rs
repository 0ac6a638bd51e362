//! The result table.

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run, for the reason in the detail (never counted as a pass).
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub check: String,
    pub outcome: Outcome,
    pub took: Duration,
    pub detail: String,
}

/// Details longer than this are cut in the table.
const DETAIL_WIDTH: usize = 110;

pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.check.chars().count())
        .chain(["check".len()])
        .max()
        .unwrap_or(5);
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  result  {:>7}  detail", "check", "time");
    let _ = writeln!(out, "{}  ------  -------  ------", "-".repeat(width));
    for r in rows {
        let detail: String = r.detail.replace('\n', " ");
        let detail = if detail.chars().count() > DETAIL_WIDTH {
            format!(
                "{}...",
                detail.chars().take(DETAIL_WIDTH).collect::<String>()
            )
        } else {
            detail
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:>6.2}s  {}",
            r.check,
            r.outcome.label(),
            r.took.as_secs_f64(),
            detail
        );
    }
    out
}

/// `21 passed, 1 failed, 1 skipped`.
pub fn counts(rows: &[Row]) -> String {
    let n = |o| rows.iter().filter(|r| r.outcome == o).count();
    format!(
        "{} passed, {} failed, {} skipped",
        n(Outcome::Pass),
        n(Outcome::Fail),
        n(Outcome::Skip)
    )
}

pub fn any_failed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.outcome == Outcome::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(check: &str, outcome: Outcome, detail: &str) -> Row {
        Row {
            check: check.into(),
            outcome,
            took: Duration::from_millis(1234),
            detail: detail.into(),
        }
    }

    #[test]
    fn the_table_aligns_and_cuts_long_details() {
        let rows = [
            row("health", Outcome::Pass, "200"),
            row("items: create", Outcome::Fail, &"x".repeat(300)),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[2].starts_with("health         PASS      1.23s  200"),
            "{t}"
        );
        assert!(
            lines[3].contains("FAIL") && lines[3].ends_with("..."),
            "{t}"
        );
        assert!(lines[3].chars().count() < 160, "{t}");
        assert_eq!(counts(&rows), "1 passed, 1 failed, 0 skipped");
        assert!(any_failed(&rows));
        assert!(!any_failed(&rows[..1]));
    }
}
