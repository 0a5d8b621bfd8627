//! A small glob matcher for one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]` and
//! `\` to escape.
//!
//! The same matcher serves remote names (from `ls`) and local names (from `read_dir`),
//! so `get *.log` and `put *.log` agree on what a pattern means. The `glob` crate walks
//! the local filesystem and cannot match a remote listing, hence this.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(Token::Literal(chars[i + 1]));
                i += 2;
            }
            '*' => {
                // Runs of stars mean the same as one.
                if out.last() != Some(&Token::AnyRun) {
                    out.push(Token::AnyRun);
                }
                i += 1;
            }
            '?' => {
                out.push(Token::AnyOne);
                i += 1;
            }
            '[' => match class(&chars, i + 1) {
                Some((token, next)) => {
                    out.push(token);
                    i = next;
                }
                // A `[` without its `]` stands for itself, as in sh.
                None => {
                    out.push(Token::Literal('['));
                    i += 1;
                }
            },
            c => {
                out.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    out
}

/// Reads a class whose body starts at `start`; returns it and the index after `]`.
fn class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        // A `]` first in the class is a member, not the end.
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            let mut end = chars[i + 2];
            i += 3;
            if end == '\\' {
                end = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, end));
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
}

fn matches_one(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyOne => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// Whether `name` matches `pattern`. As in a shell, a name that starts with `.` is only
/// matched by a pattern that starts with `.`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match: on a mismatch, go back to the last `*` and let it
    // swallow one more character. Linear in practice, quadratic at worst.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if matches_one(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::AnyRun)
}

/// Whether a word has glob characters that are not escaped.
pub fn is_pattern(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("*.log", "a.log"));
        assert!(!matches("*.log", ".log.log"));
        assert!(matches("*", "anything at all"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("**x", "x"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("Été*", "Été 2026"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches("file[12].txt", "file2.txt"));
        assert!(!matches("file[12].txt", "file3.txt"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("[^a-c]x", "dx"));
        assert!(matches("[]]", "]"));
        assert!(matches(r"\*.txt", "*.txt"));
        assert!(!matches(r"\*.txt", "a.txt"));
        assert!(matches("[x", "[x"), "an unclosed class is literal");
        assert!(matches("a[-]b", "a-b"));
    }

    #[test]
    fn hidden_names_need_a_leading_dot() {
        assert!(!matches("*", ".profile"));
        assert!(matches(".*", ".profile"));
        assert!(!matches("?profile", ".profile"));
    }

    #[test]
    fn knows_a_pattern_when_it_sees_one() {
        assert!(is_pattern("*.log"));
        assert!(is_pattern("a[1]"));
        assert!(!is_pattern(r"a\*b"));
        assert!(!is_pattern("plain.txt"));
    }

    #[test]
    fn no_blow_up_on_many_stars() {
        let name = "a".repeat(200);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &name));
    }
}
