//! Parsing with rnix, and syntax errors: rnix's parse errors turned into located messages in
//! Nix's words ("unexpected '=', expecting ';'"), instead of rnix's debug rendering.

use rnix::{ParseError, SyntaxKind};

use super::diag::{EvalError, Pos};

/// Bracket nesting beyond which we do not evaluate: rnix's parser gets slow (quadratic) on very
/// deep trees, and real rules files never come close. Nix itself accepts more, so this is
/// "unsupported" (and may fall back to `nix-instantiate`), not an error.
const MAX_NESTING: usize = 1000;

/// Most `[` a file may hold for its nesting to be checked while rnix parses it, on another
/// core, instead of before. Only list nesting is not bounded by rnix itself (its expression
/// depth stops at 512), and rnix takes time quadratic in it (14 ms for 1,000 nested lists,
/// 1.4 s for 10,000): so this bounds what parsing a file nested too deeply costs before it is
/// refused. No more than rnix already takes on files of that size without brackets (a chain
/// `f x x …` of 10,000 arguments: 1.1 s).
const CHECK_WHILE_PARSING_MAX_LISTS: usize = 10_000;

/// rnix's parse of `text`, or the error for input nested deeper than [`MAX_NESTING`]
/// brackets (which rnix parses in quadratic time, and which Nix may still evaluate).
pub(crate) fn parse(file: u32, text: &str) -> Result<rnix::Parse<rnix::Root>, EvalError> {
    let (openers, lists) = count_openers(text);
    if openers <= MAX_NESTING {
        return Ok(rnix::Root::parse(text));
    }
    if lists > CHECK_WHILE_PARSING_MAX_LISTS {
        check_depth(file, text)?;
        return Ok(rnix::Root::parse(text));
    }
    // The check tokenizes the whole file once more: done beside the parse, it costs no time.
    std::thread::scope(|scope| {
        let check = std::thread::Builder::new()
            .name("rules-nesting".to_owned())
            .spawn_scoped(scope, || check_depth(file, text));
        let parse = rnix::Root::parse(text);
        match check {
            Ok(check) => check
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => check_depth(file, text),
        }?;
        Ok(parse)
    })
}

/// How many bytes of `text` may open a bracket, and how many of them are `[`. Every opening
/// token starts with one of these bytes, so with no more of them than the limit the input
/// cannot nest deeper: this spares most files a second tokenization.
fn count_openers(text: &str) -> (usize, usize) {
    let (mut openers, mut lists) = (0, 0);
    for b in text.bytes() {
        match b {
            b'[' => {
                openers += 1;
                lists += 1;
            }
            b'{' | b'(' => openers += 1,
            _ => {}
        }
    }
    (openers, lists)
}

/// The nesting check proper, on rnix's tokens.
fn check_depth(file: u32, text: &str) -> Result<(), EvalError> {
    use SyntaxKind::*;
    let mut depth = 0usize;
    let mut offset = 0usize;
    for (kind, token) in rnix::tokenize(text) {
        match kind {
            TOKEN_L_BRACE | TOKEN_L_BRACK | TOKEN_L_PAREN | TOKEN_INTERPOL_START => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(EvalError::unsupported(
                        format!("nesting deeper than {MAX_NESTING} brackets"),
                        Some(Pos {
                            file,
                            offset: offset as u32,
                        }),
                    ));
                }
            }
            TOKEN_R_BRACE | TOKEN_R_BRACK | TOKEN_R_PAREN | TOKEN_INTERPOL_END => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        offset += token.len();
    }
    Ok(())
}

/// The first parse error of file `file`, located.
pub(crate) fn error(file: u32, text: &str, err: &ParseError) -> EvalError {
    let at = |range: rnix::TextRange| {
        (
            Pos {
                file,
                offset: range.start().into(),
            },
            u32::from(range.len()).max(1),
        )
    };
    let end = Pos {
        file,
        offset: text.len() as u32,
    };
    match err {
        ParseError::Unexpected(range) => {
            let (pos, len) = at(*range);
            let found = text
                .get(usize::from(range.start())..usize::from(range.end()))
                .unwrap_or("")
                .trim();
            EvalError::syntax(format!("syntax error, unexpected '{found}'"), pos, len)
        }
        ParseError::UnexpectedExtra(range) => {
            let (pos, len) = at(*range);
            EvalError::syntax("syntax error, unexpected extra input", pos, len)
        }
        ParseError::UnexpectedWanted(got, range, wanted) => {
            let (mut pos, len) = at(*range);
            if *got == SyntaxKind::TOKEN_ERROR {
                // rnix flags what follows an unterminated string's opening quote; point at the
                // quote, where the broken string starts.
                let before = &text[..pos.offset as usize];
                if before.ends_with("''") {
                    pos.offset -= 2;
                } else if before.ends_with('"') {
                    pos.offset -= 1;
                }
            }
            EvalError::syntax(
                format!(
                    "syntax error, unexpected {}, expecting {}",
                    describe(*got),
                    expecting(wanted)
                ),
                pos,
                len,
            )
        }
        ParseError::UnexpectedDoubleBind(range) => {
            let (pos, len) = at(*range);
            EvalError::syntax("syntax error, a function argument is bound twice", pos, len)
        }
        ParseError::UnexpectedEOF => {
            EvalError::syntax("syntax error, unexpected end of file", end, 1)
        }
        ParseError::UnexpectedEOFWanted(wanted) => EvalError::syntax(
            format!(
                "syntax error, unexpected end of file, expecting {}",
                expecting(wanted)
            ),
            end,
            1,
        ),
        ParseError::DuplicatedArgs(range, name) => {
            let (pos, len) = at(*range);
            EvalError::syntax(
                format!("duplicate formal function argument '{name}'"),
                pos,
                len,
            )
        }
        ParseError::RecursionLimitExceeded => EvalError::unsupported(
            "an expression nested this deeply",
            Some(Pos { file, offset: 0 }),
        ),
        _ => EvalError::syntax(format!("syntax error, {err}"), Pos { file, offset: 0 }, 1),
    }
}

fn expecting(wanted: &[SyntaxKind]) -> String {
    let names: Vec<String> = wanted.iter().map(|k| describe(*k)).collect();
    match names.as_slice() {
        [] => "something else".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A token kind as Nix's parser names it.
fn describe(kind: SyntaxKind) -> String {
    use SyntaxKind::*;
    let s = match kind {
        TOKEN_ADD => "'+'",
        TOKEN_AND_AND => "'&&'",
        TOKEN_ASSIGN => "'='",
        TOKEN_ASSERT => "'assert'",
        TOKEN_AT => "'@'",
        TOKEN_COLON => "':'",
        TOKEN_COMMA => "','",
        TOKEN_CONCAT => "'++'",
        TOKEN_DIV => "'/'",
        TOKEN_DOT => "'.'",
        TOKEN_ELLIPSIS => "'...'",
        TOKEN_ELSE => "'else'",
        TOKEN_EQUAL => "'=='",
        TOKEN_FLOAT => "float",
        TOKEN_IDENT => "identifier",
        TOKEN_IF => "'if'",
        TOKEN_IMPLICATION => "'->'",
        TOKEN_IN => "'in'",
        TOKEN_INHERIT => "'inherit'",
        TOKEN_INTEGER => "integer",
        TOKEN_INTERPOL_END => "'}'",
        TOKEN_INTERPOL_START => "'${'",
        TOKEN_INVERT => "'!'",
        TOKEN_L_BRACE => "'{'",
        TOKEN_L_BRACK => "'['",
        TOKEN_L_PAREN => "'('",
        TOKEN_LESS => "'<'",
        TOKEN_LESS_OR_EQ => "'<='",
        TOKEN_LET => "'let'",
        TOKEN_MORE => "'>'",
        TOKEN_MORE_OR_EQ => "'>='",
        TOKEN_MUL => "'*'",
        TOKEN_NOT_EQUAL => "'!='",
        TOKEN_OR => "'or'",
        TOKEN_OR_OR => "'||'",
        TOKEN_PATH_ABS | TOKEN_PATH_REL | TOKEN_PATH_HOME => "path",
        TOKEN_PATH_SEARCH => "search path",
        TOKEN_QUESTION => "'?'",
        TOKEN_R_BRACE => "'}'",
        TOKEN_R_BRACK => "']'",
        TOKEN_R_PAREN => "')'",
        TOKEN_REC => "'rec'",
        TOKEN_SEMICOLON => "';'",
        TOKEN_STRING_CONTENT => "string content",
        TOKEN_STRING_END | TOKEN_STRING_START => "'\"'",
        TOKEN_SUB => "'-'",
        TOKEN_THEN => "'then'",
        TOKEN_UPDATE => "'//'",
        TOKEN_URI => "URI",
        TOKEN_WITH => "'with'",
        TOKEN_ERROR => "invalid token",
        TOKEN_CUR_POS => "'__curPos'",
        other => return format!("{other:?}").to_lowercase().replace('_', " "),
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{}1{}", open.repeat(depth), close.repeat(depth))
    }

    fn is_too_deep(result: Result<rnix::Parse<rnix::Root>, EvalError>) -> bool {
        result.is_err_and(|e| e.message.contains("nesting deeper than"))
    }

    #[test]
    fn nesting_is_limited_at_exactly_max_nesting_brackets() {
        let at_limit = nested("[", "]", MAX_NESTING);
        assert!(parse(0, &at_limit).is_ok_and(|p| p.errors().is_empty()));
        assert!(is_too_deep(parse(0, &nested("[", "]", MAX_NESTING + 1))));
        assert!(is_too_deep(parse(
            0,
            &nested("\"${", "}\"", MAX_NESTING + 1)
        )));
        assert!(is_too_deep(parse(0, &nested("[ (", ") ]", MAX_NESTING))));
    }

    #[test]
    fn nesting_is_checked_before_parsing_a_file_of_many_lists() {
        // Above CHECK_WHILE_PARSING_MAX_LISTS `[`, deep or not, the check comes first: rnix
        // would take minutes to parse this one.
        let deep = nested("[", "]", 4 * CHECK_WHILE_PARSING_MAX_LISTS);
        assert!(is_too_deep(parse(0, &deep)));
        let wide = format!(
            "{} {}",
            nested("[", "]", MAX_NESTING + 1),
            "[ ] ".repeat(CHECK_WHILE_PARSING_MAX_LISTS)
        );
        assert!(is_too_deep(parse(0, &wide)));
    }

    #[test]
    fn many_shallow_brackets_are_not_deep_nesting() {
        assert!(parse(0, &"[ ] ".repeat(3 * MAX_NESTING)).is_ok());
        // Brackets inside strings are not tokens and do not count.
        let quoted = format!("[ \"{}\" ]", "[".repeat(3 * MAX_NESTING));
        assert!(parse(0, &quoted).is_ok());
    }
}
