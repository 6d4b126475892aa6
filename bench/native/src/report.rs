//! Markdown tables with each peer's figure beside its ratio to ours, the checks that decide
//! the exit code, and the targets.

use std::fmt::Write as _;

/// Which way is better for a column, and the words its ratio uses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Better {
    /// A rate: more is faster.
    HigherFaster,
    /// A duration: less is faster.
    LowerFaster,
    /// A size: less is smaller.
    LowerSmaller,
    /// No ratio (a check or a count).
    None,
}

/// A column: its header, how to print its figures, and how to compare them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub(crate) header: &'static str,
    pub(crate) better: Better,
    pub(crate) decimals: usize,
}

pub(crate) const fn column(header: &'static str, better: Better, decimals: usize) -> Column {
    Column {
        header,
        better,
        decimals,
    }
}

/// What a row is, for the ratios and the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Ours, the baseline of every ratio.
    Ours,
    /// Ours, another way (e.g. as signed packs); compared to the baseline too.
    OursVariant,
    /// A peer with the care it needs: these rows decide the targets.
    Peer,
    /// A peer without that care: shown for what it costs, not used for targets.
    PeerWithoutCare,
}

#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Num(f64),
    Text(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) library: String,
    pub(crate) role: Role,
    /// How the library was set up for this workload (its care for nested maps, or where the
    /// key lives).
    pub(crate) setup: String,
    pub(crate) cells: Vec<Cell>,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) title: String,
    /// The header of the column saying how each library was set up.
    pub(crate) setup_header: &'static str,
    pub(crate) columns: Vec<Column>,
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(
        title: impl Into<String>,
        setup_header: &'static str,
        columns: &[Column],
    ) -> Table {
        Table {
            title: title.into(),
            setup_header,
            columns: columns.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Row) {
        assert_eq!(row.cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(row);
    }

    fn column_index(&self, header: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c.header == header)
            .unwrap_or_else(|| panic!("no column {header:?} in {:?}", self.title))
    }

    /// The figure of `header` in the first row with `role`.
    pub(crate) fn figure(&self, role: Role, library: Option<&str>, header: &str) -> f64 {
        let i = self.column_index(header);
        let row = self
            .rows
            .iter()
            .find(|r| r.role == role && library.is_none_or(|l| r.library == l))
            .unwrap_or_else(|| panic!("no {role:?} row in {:?}", self.title));
        match row.cells[i] {
            Cell::Num(v) => v,
            Cell::Text(_) => panic!("{header:?} is not a figure"),
        }
    }

    /// `v` as the column `header` prints it.
    pub(crate) fn format(&self, header: &str, v: f64) -> String {
        number(v, self.columns[self.column_index(header)].decimals)
    }

    /// The best peer's figure of `header` (with care), and that peer's name.
    pub(crate) fn best_peer(&self, header: &str) -> (String, f64) {
        let i = self.column_index(header);
        let better = self.columns[i].better;
        self.rows
            .iter()
            .filter(|r| r.role == Role::Peer)
            .filter_map(|r| match r.cells[i] {
                Cell::Num(v) => Some((r.library.clone(), v)),
                Cell::Text(_) => None,
            })
            .reduce(|best, next| {
                let next_is_better = match better {
                    Better::HigherFaster => next.1 > best.1,
                    _ => next.1 < best.1,
                };
                if next_is_better { next } else { best }
            })
            .expect("at least one peer")
    }

    pub(crate) fn render(&self) -> String {
        let ours = self.rows.iter().find(|r| r.role == Role::Ours);
        let mut out = format!("### {}\n\n| library | {} |", self.title, self.setup_header);
        for c in &self.columns {
            let _ = write!(out, " {} |", c.header);
        }
        out.push_str("\n| --- | --- |");
        for c in &self.columns {
            out.push_str(match c.better {
                Better::None => " --- |",
                _ => " ---: |",
            });
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "| {} | {} |", row.library, row.setup);
            for (i, (column, cell)) in self.columns.iter().zip(&row.cells).enumerate() {
                let text = match cell {
                    Cell::Text(t) => t.clone(),
                    Cell::Num(v) => {
                        let mut text = number(*v, column.decimals);
                        let baseline = ours.and_then(|o| match o.cells[i] {
                            Cell::Num(b) => Some(b),
                            Cell::Text(_) => None,
                        });
                        // Ratios compare the peers with ours; our other variants are compared
                        // with the peers in the targets instead.
                        if matches!(row.role, Role::Peer | Role::PeerWithoutCare)
                            && let Some(b) = baseline
                            && let Some(ratio) = ratio_words(column.better, b, *v)
                        {
                            let _ = write!(text, " ({ratio})");
                        }
                        text
                    }
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        for note in &self.notes {
            let _ = write!(out, "\n{note}\n");
        }
        out
    }
}

/// "tidemark 3.2× faster", "tidemark 2.0× larger", … comparing ours (`ours`) to `theirs`.
pub(crate) fn ratio_words(better: Better, ours: f64, theirs: f64) -> Option<String> {
    let (advantage, good, bad) = match better {
        Better::HigherFaster => (ours / theirs, "faster", "slower"),
        Better::LowerFaster => (theirs / ours, "faster", "slower"),
        Better::LowerSmaller => (theirs / ours, "smaller", "larger"),
        Better::None => return None,
    };
    if !advantage.is_finite() || advantage <= 0.0 {
        return None;
    }
    Some(if advantage >= 1.0 {
        format!("tidemark {advantage:.1}× {good}")
    } else {
        format!("tidemark {:.1}× {bad}", 1.0 / advantage)
    })
}

/// `v` with `decimals` decimals and thousands separated by commas.
pub(crate) fn number(v: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text
        .split_once('.')
        .map_or((&text[..], None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Failed checks: a library that does not converge or reads back other values than written,
/// or ours hiding a written key. Any of them makes the run exit non-zero.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    pub(crate) failures: Vec<String>,
}

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            self.failures.push(what());
        }
        ok
    }
}

/// One of the targets, measured.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) text: String,
    pub(crate) met: bool,
    pub(crate) detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands() {
        assert_eq!(number(1234567.891, 1), "1,234,567.9");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(-1000.0, 0), "-1,000");
    }

    #[test]
    fn ratios_say_which_way() {
        let w = |b, o, t| ratio_words(b, o, t).unwrap();
        assert_eq!(
            w(Better::HigherFaster, 300.0, 100.0),
            "tidemark 3.0× faster"
        );
        assert_eq!(w(Better::LowerFaster, 300.0, 100.0), "tidemark 3.0× slower");
        assert_eq!(w(Better::LowerSmaller, 10.0, 40.0), "tidemark 4.0× smaller");
    }
}
