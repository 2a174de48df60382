//! Markdown pieces for job summaries: a table whose cells are escaped, a collapsible block.

use std::fmt::Write as _;

/// One table cell's text: `|` escaped, line breaks and control characters turned into
/// spaces, runs of blanks kept as they are, and `empty` shown as "—".
pub fn cell(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "—".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A GitHub-flavoured Markdown table. Cells are escaped when added; a row shorter than the
/// header is padded with "—", a longer one is cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (an empty header stays blank).
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers
                .iter()
                .map(|h| {
                    if h.trim().is_empty() {
                        String::new()
                    } else {
                        cell(h)
                    }
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of raw texts (escaped here).
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> &mut Self {
        self.rows
            .push(cells.iter().map(|c| cell(c.as_ref())).collect());
        self
    }

    /// Adds a row whose cells are Markdown already (links, code spans): only line breaks are
    /// removed, `|` must already be escaped by the caller.
    pub fn row_markdown<S: AsRef<str>>(&mut self, cells: &[S]) -> &mut Self {
        self.rows.push(
            cells
                .iter()
                .map(|c| {
                    let t = c.as_ref().replace(['\n', '\r'], " ");
                    if t.trim().is_empty() {
                        "—".to_owned()
                    } else {
                        t
                    }
                })
                .collect(),
        );
        self
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, ending with a newline.
    pub fn render(&self) -> String {
        let width = self.headers.len();
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.headers.join(" | ").trim_end());
        let _ = writeln!(out, "|{}", "---|".repeat(width));
        for row in &self.rows {
            let mut cells: Vec<&str> = row.iter().map(String::as_str).take(width).collect();
            cells.resize(width, "—");
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A collapsible block (`<details>`), rendered by GitHub in job summaries and by GitLab.
pub fn details(summary: &str, body: &str) -> String {
    format!(
        "<details><summary>{}</summary>\n\n{}\n</details>\n",
        html_escape(summary),
        body.trim_end()
    )
}

/// The summary of a run that could not run at all: a headline and the error in a code block.
pub fn could_not_run(headline: &str, message: &str) -> String {
    format!(
        "### ⚠️ {headline}: could not run\n\n```text\n{}\n```\n",
        message.trim_end().replace("```", "'''")
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An inline code span that survives backticks in `text` and sits in a table cell.
pub fn code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ").replace('|', "\\|");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_rows_padded() {
        let mut t = Table::new(&["a", "b"]);
        t.row(&["x | y", "line\nbreak"]).row(&["only"]);
        assert_eq!(
            t.render(),
            "| a | b |\n|---|---|\n| x \\| y | line break |\n| only | — |\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn code_spans_keep_backticks_and_pipes_inside() {
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("rate(x[1m]) | y"), "`rate(x[1m]) \\| y`");
    }

    #[test]
    fn details_escape_the_summary_line() {
        assert_eq!(
            details("<all> checks", "body\n"),
            "<details><summary>&lt;all&gt; checks</summary>\n\nbody\n</details>\n"
        );
    }
}
