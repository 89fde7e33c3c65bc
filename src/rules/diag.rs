//! Evaluation diagnostics: source files, byte positions turned into `file:line:col`, and the
//! error type the evaluator returns. Rendering (with a source snippet, no colours) happens here
//! and nowhere else, so every error a user sees has the same shape.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

/// `line` with control characters escaped (`\n`, `\u{1b}`), for text the rules author or a
/// committer chooses: thrown messages, traces, rule and file names, lines of the rules file,
/// what `nix-instantiate` echoes of them. A raw newline would let them write whole lines of a
/// CI log (where `::error::` is a command), an ESC or CR rewrite a terminal. Applied to each
/// piece as it is rendered, so the newlines ragenix itself puts between lines stay.
pub fn escape_for_display(line: &str) -> String {
    if !line.chars().any(char::is_control) {
        return line.to_owned();
    }
    line.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A position: which loaded file, and a byte offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub file: u32,
    pub offset: u32,
}

/// One loaded Nix source file.
#[derive(Debug)]
pub(crate) struct Source {
    /// The name shown to users (the path as given, or joined onto the importing file's).
    pub shown: String,
    /// The file's absolute path, for caching and relative paths.
    pub path: PathBuf,
    pub text: Rc<str>,
    line_starts: Vec<u32>,
}

/// All files read during one evaluation.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    files: Vec<Source>,
}

impl Sources {
    pub fn add(&mut self, shown: String, path: PathBuf, text: Rc<str>) -> u32 {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        self.files.push(Source {
            shown,
            path,
            text,
            line_starts,
        });
        self.files.len() as u32 - 1
    }

    pub fn get(&self, file: u32) -> &Source {
        &self.files[file as usize]
    }

    /// 1-based line and column (in characters) of a position.
    pub fn line_col(&self, pos: Pos) -> (usize, usize) {
        let src = self.get(pos.file);
        let line = src.line_starts.partition_point(|&s| s <= pos.offset) - 1;
        let start = src.line_starts[line] as usize;
        let end = (pos.offset as usize).min(src.text.len());
        let col = src
            .text
            .get(start..end)
            .map(|s| s.chars().count())
            .unwrap_or(end - start);
        (line + 1, col + 1)
    }

    /// `file:line:col`, as Nix prints positions.
    pub fn show(&self, pos: Pos) -> String {
        let (line, col) = self.line_col(pos);
        format!("{}:{line}:{col}", self.get(pos.file).shown)
    }
}

/// What kind of failure an error is; only `Unsupported` may lead to the `nix-instantiate` fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Syntax,
    Eval,
    Unsupported,
}

/// An evaluation failure with the position Nix would name.
#[derive(Debug, Clone)]
pub(crate) struct EvalError {
    pub kind: ErrorKind,
    pub message: String,
    pub pos: Option<Pos>,
    /// Length in bytes of the offending construct, for the snippet's underline.
    pub len: u32,
    /// An earlier position the message refers to ("already defined at …").
    pub previous: Option<Pos>,
    /// Raised by `throw` or a failed `assert`: what `builtins.tryEval` catches.
    pub thrown: bool,
}

impl EvalError {
    pub fn eval(message: impl Into<String>, pos: Option<Pos>) -> Self {
        EvalError {
            kind: ErrorKind::Eval,
            message: message.into(),
            pos,
            len: 1,
            previous: None,
            thrown: false,
        }
    }

    pub fn unsupported(what: impl std::fmt::Display, pos: Option<Pos>) -> Self {
        EvalError {
            kind: ErrorKind::Unsupported,
            message: format!("{what} is unsupported in ragenix's evaluator"),
            pos,
            len: 1,
            previous: None,
            thrown: false,
        }
    }

    pub fn syntax(message: impl Into<String>, pos: Pos, len: u32) -> Self {
        EvalError {
            kind: ErrorKind::Syntax,
            message: message.into(),
            pos: Some(pos),
            len,
            previous: None,
            thrown: false,
        }
    }

    /// The message with any earlier position spelled out.
    pub fn message(&self, sources: &Sources) -> String {
        match self.previous {
            Some(p) => format!("{} at {}", self.message, sources.show(p)),
            None => self.message.clone(),
        }
    }

    /// The full user-facing message: `file:line:col: error: …` and a source snippet.
    pub fn render(&self, sources: &Sources, fallback_file: &str) -> String {
        // The message may carry the author's text (`throw`, `abort`, a string in an
        // `assert`), a file name theirs too: one line, escaped.
        let message = escape_for_display(&self.message(sources));
        let Some(pos) = self.pos else {
            return format!("{}: error: {message}", escape_for_display(fallback_file));
        };
        let mut out = format!(
            "{}: error: {message}",
            escape_for_display(&sources.show(pos))
        );
        let src = sources.get(pos.file);
        let start = (pos.offset as usize).min(src.text.len());
        // Underline at most to the end of the line: rnix's error ranges can run to the end of
        // the file, which would make the snippet the whole rest of it.
        let line_end = src.text[start..]
            .find('\n')
            .map_or(src.text.len(), |i| start + i);
        let mut end = (start + self.len.max(1) as usize)
            .min(line_end.max(start + 1))
            .min(src.text.len());
        while end < src.text.len() && !src.text.is_char_boundary(end) {
            end += 1;
        }
        let (text, [start, end]) = escaped_source(&src.text, [start, end]);
        let report = miette::Report::new(
            miette::MietteDiagnostic::new(message)
                .with_label(miette::LabeledSpan::at(start..end, "here")),
        )
        .with_source_code(miette::NamedSource::new(&src.shown, text));
        let mut snippet = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_context_lines(1);
        if handler.render_report(&mut snippet, report.as_ref()).is_ok() {
            // The first line repeats the message already in our header. The others quote the
            // rules file's lines, which may hold an ESC or a CR.
            let mut body: Vec<String> = snippet.lines().skip(1).map(escape_for_display).collect();
            // miette counts the column in the escaped text; the position is the one in the
            // header, as Nix counts it.
            if let Some(line) = body.iter_mut().find(|l| l.trim_start().starts_with("╭─[")) {
                if let Some(open) = line.find('[') {
                    line.replace_range(
                        open..,
                        &format!("[{}]", escape_for_display(&sources.show(pos))),
                    );
                }
            }
            let _ = write!(out, "\n{}", body.join("\n").trim_end());
        }
        out
    }
}

/// The rules file's text as the snippet shows it: control characters escaped but for the
/// line breaks and tabs miette lays out itself, and `offsets` moved along, so the underline
/// still points at the same character when an ESC precedes it on the line.
fn escaped_source(text: &str, mut offsets: [usize; 2]) -> (String, [usize; 2]) {
    let mut out = String::with_capacity(text.len());
    let mut moved = [false; 2];
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        for (offset, moved) in offsets.iter_mut().zip(&mut moved) {
            if !*moved && *offset == i {
                *offset = out.len();
                *moved = true;
            }
        }
        let line_break = c == '\n' || (c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n'));
        if line_break || c == '\t' {
            out.push(c);
        } else {
            out.push_str(&escape_for_display(c.encode_utf8(&mut [0; 4])));
        }
    }
    for (offset, moved) in offsets.iter_mut().zip(moved) {
        if !moved {
            *offset = out.len();
        }
    }
    (out, offsets)
}

/// Where a rules file's secrets and their attributes were defined, by position in name order
/// (the order of the evaluated JSON objects): the i-th secret, and the j-th attribute of it.
/// Kept compact (no per-attribute strings) because it is built for every evaluation.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    files: Vec<String>,
    secrets: Vec<Option<Loc>>,
    /// For secret i, its attributes are `attrs[attr_start[i]..attr_start[i + 1]]`.
    attr_start: Vec<u32>,
    attrs: Vec<Option<Loc>>,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    file: u32,
    line: u32,
    col: u32,
}

impl Locations {
    pub fn new() -> Self {
        Self::default()
    }

    /// `file:line:col` of the i-th secret's definition.
    pub fn secret(&self, i: usize) -> Option<String> {
        self.show(*self.secrets.get(i)?)
    }

    /// `file:line:col` of the j-th attribute of the i-th secret.
    pub fn attr(&self, i: usize, j: usize) -> Option<String> {
        let start = *self.attr_start.get(i)? as usize;
        let end = self
            .attr_start
            .get(i + 1)
            .map_or(self.attrs.len(), |e| *e as usize);
        if start + j >= end {
            return None;
        }
        self.show(self.attrs[start + j])
    }

    fn show(&self, loc: Option<Loc>) -> Option<String> {
        let loc = loc?;
        Some(format!(
            "{}:{}:{}",
            self.files.get(loc.file as usize)?,
            loc.line,
            loc.col
        ))
    }

    pub(crate) fn push_secret(&mut self, sources: &Sources, pos: Option<Pos>) {
        self.secrets.push(pos.map(|p| loc(sources, p)));
        self.attr_start.push(self.attrs.len() as u32);
    }

    pub(crate) fn push_attr(&mut self, sources: &Sources, pos: Option<Pos>) {
        if !self.secrets.is_empty() {
            self.attrs.push(pos.map(|p| loc(sources, p)));
        }
    }

    pub(crate) fn set_files(&mut self, sources: &Sources) {
        self.files = sources.files.iter().map(|f| f.shown.clone()).collect();
    }
}

fn loc(sources: &Sources, pos: Pos) -> Loc {
    let (line, col) = sources.line_col(pos);
    Loc {
        file: pos.file,
        line: line as u32,
        col: col as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, offset: u32) -> String {
        let mut sources = Sources::default();
        let file = sources.add("s.nix".into(), PathBuf::from("/s.nix"), text.into());
        let pos = Pos { file, offset };
        EvalError::eval("x\n::error::y", Some(pos)).render(&sources, "s.nix")
    }

    #[test]
    fn an_esc_on_the_line_is_escaped_and_the_underline_still_points_at_the_error() {
        let text = "{\n  a = \"\u{1b}[2K\" + throw \"boom\";\n}\n";
        let offset = text.find("throw").unwrap() as u32;
        let out = render(text, offset);
        assert!(!out.contains('\u{1b}'), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "s.nix:2:16: error: x\\n::error::y", "{out}");
        assert!(lines[1].ends_with("[s.nix:2:16]"), "{out}");
        let quoted = lines.iter().find(|l| l.contains("throw")).unwrap();
        let mark = lines.iter().find(|l| l.contains('┬')).unwrap();
        let col = |l: &str, pat: &str| l[..l.find(pat).unwrap()].chars().count();
        assert_eq!(col(quoted, "throw"), col(mark, "┬"), "{out}");
    }
}
