//! Splitting a shell line into words the way a person expects from a Unix shell: spaces
//! separate words, `'...'` and `"..."` quote, and a backslash escapes the next character.
//!
//! Each word remembers whether it had an unquoted `*`, `?` or `[`, so that `get *.log`
//! is a pattern while `get "*.log"` and `get \*.log` name the file `*.log`.

/// One word of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word with its quotes and escapes removed.
    pub text: String,
    /// A glob pattern when the word has unquoted glob characters. Quoted or escaped
    /// glob characters appear in it escaped with `\`, for [`super::glob`] to take literally.
    pub pattern: Option<String>,
}

impl Word {
    /// A word taken literally.
    pub fn literal(text: impl Into<String>) -> Word {
        Word {
            text: text.into(),
            pattern: None,
        }
    }
}

/// Why a line could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error("unterminated {0} quote")]
    UnterminatedQuote(char),
    #[error("the line ends with a backslash")]
    TrailingBackslash,
}

/// A word being read, with where it started in the line.
struct Partial {
    start: usize,
    text: String,
    pattern: String,
    globbed: bool,
}

impl Partial {
    fn new(start: usize) -> Partial {
        Partial {
            start,
            text: String::new(),
            pattern: String::new(),
            globbed: false,
        }
    }

    /// A character that stands for itself.
    fn literal(&mut self, c: char) {
        self.text.push(c);
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            self.pattern.push('\\');
        }
        self.pattern.push(c);
    }

    /// An unquoted `]`: it closes a class in a pattern, and is itself elsewhere.
    fn bracket(&mut self) {
        self.text.push(']');
        self.pattern.push(']');
    }

    /// An unquoted glob character.
    fn glob(&mut self, c: char) {
        self.text.push(c);
        self.pattern.push(c);
        self.globbed = true;
    }

    fn finish(self) -> (usize, Word) {
        let pattern = self.globbed.then_some(self.pattern);
        (
            self.start,
            Word {
                text: self.text,
                pattern,
            },
        )
    }
}

/// What [`scan`] found: the words with their start offsets, and whether the line ended
/// inside a word (no trailing space), inside a quote, or after a lone backslash.
struct Scan {
    words: Vec<(usize, Word)>,
    open_word: bool,
    open_quote: Option<char>,
    trailing_backslash: bool,
}

fn scan(line: &str) -> Scan {
    let mut words = Vec::new();
    let mut current: Option<Partial> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    let mut trailing_backslash = false;
    while let Some((i, c)) = chars.next() {
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                } else if let Some(word) = current.as_mut() {
                    word.literal(c);
                }
            }
            Some(_) => match c {
                '"' => quote = None,
                '\\' if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                    if let (Some((_, next)), Some(word)) = (chars.next(), current.as_mut()) {
                        word.literal(next);
                    }
                }
                _ => {
                    if let Some(word) = current.as_mut() {
                        word.literal(c);
                    }
                }
            },
            None => {
                if c == ' ' || c == '\t' {
                    if let Some(word) = current.take() {
                        words.push(word.finish());
                    }
                    continue;
                }
                let word = current.get_or_insert_with(|| Partial::new(i));
                match c {
                    '\'' | '"' => quote = Some(c),
                    '\\' => match chars.next() {
                        Some((_, next)) => word.literal(next),
                        None => trailing_backslash = true,
                    },
                    '*' | '?' | '[' => word.glob(c),
                    ']' => word.bracket(),
                    _ => word.literal(c),
                }
            }
        }
    }
    let open_word = current.is_some();
    if let Some(word) = current {
        words.push(word.finish());
    }
    Scan {
        words,
        open_word,
        open_quote: quote,
        trailing_backslash,
    }
}

/// Splits a command line into words.
pub fn split_line(line: &str) -> Result<Vec<Word>, SplitError> {
    let scan = scan(line);
    if let Some(q) = scan.open_quote {
        return Err(SplitError::UnterminatedQuote(q));
    }
    if scan.trailing_backslash {
        return Err(SplitError::TrailingBackslash);
    }
    Ok(scan.words.into_iter().map(|(_, word)| word).collect())
}

/// The words before the cursor, for completion: the complete words, then the offset
/// where the word under the cursor starts and its text so far (empty after a space).
pub fn words_before(line: &str) -> (Vec<Word>, usize, String) {
    let mut scan = scan(line);
    if scan.open_word
        && let Some((start, word)) = scan.words.pop()
    {
        let done = scan.words.into_iter().map(|(_, w)| w).collect();
        return (done, start, word.text);
    }
    let done = scan.words.into_iter().map(|(_, w)| w).collect();
    (done, line.len(), String::new())
}

/// Writes `text` so that [`split_line`] reads it back as one literal word.
pub fn escape(text: &str) -> String {
    if text.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            ' ' | '\t' | '\'' | '"' | '\\' | '*' | '?' | '[' | ']' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        split_line(line)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn splits_on_spaces_and_honours_quotes() {
        assert_eq!(texts("  get  a.bin   /in/ "), ["get", "a.bin", "/in/"]);
        assert_eq!(
            texts("put 'my file.txt' \"x y\""),
            ["put", "my file.txt", "x y"]
        );
        assert_eq!(texts(r"rm my\ file"), ["rm", "my file"]);
        assert_eq!(texts(r#"ls "a\"b" 'c\d'"#), ["ls", "a\"b", r"c\d"]);
        assert_eq!(texts("ls ''"), ["ls", ""]);
        assert_eq!(texts("ab'cd'ef"), ["abcdef"]);
        assert!(texts("").is_empty());
    }

    #[test]
    fn unquoted_glob_characters_make_a_pattern() {
        let words = split_line(r#"get *.log "*.txt" \*.md a[12]?"#).unwrap();
        assert_eq!(words[1].pattern.as_deref(), Some("*.log"));
        assert_eq!(words[2].pattern, None);
        assert_eq!(words[2].text, "*.txt");
        assert_eq!(words[3].pattern, None);
        assert_eq!(words[4].pattern.as_deref(), Some("a[12]?"));
        let mixed = split_line(r#"'[x]'*"#).unwrap();
        assert_eq!(mixed[0].pattern.as_deref(), Some(r"\[x\]*"));
        assert_eq!(mixed[0].text, "[x]*");
    }

    #[test]
    fn rejects_unterminated_quotes_and_backslashes() {
        assert_eq!(
            split_line("get 'abc"),
            Err(SplitError::UnterminatedQuote('\''))
        );
        assert_eq!(
            split_line("get \"abc"),
            Err(SplitError::UnterminatedQuote('"'))
        );
        assert_eq!(split_line("get abc\\"), Err(SplitError::TrailingBackslash));
    }

    #[test]
    fn finds_the_word_under_the_cursor() {
        let (done, start, word) = words_before("get docs/re");
        assert_eq!(done, vec![Word::literal("get")]);
        assert_eq!((start, word.as_str()), (4, "docs/re"));
        let (done, start, word) = words_before("get a ");
        assert_eq!(done.len(), 2);
        assert_eq!((start, word.as_str()), (6, ""));
        let (_, start, word) = words_before("cd \"my fi");
        assert_eq!((start, word.as_str()), (3, "my fi"));
        let (_, start, word) = words_before(r"cd my\ fi");
        assert_eq!((start, word.as_str()), (3, "my fi"));
    }

    #[test]
    fn escape_round_trips() {
        for text in ["plain", "my file", "a'b\"c\\d", "*.log", "[x]", "", "#tag"] {
            let words = split_line(&escape(text)).unwrap();
            assert_eq!(words, vec![Word::literal(text)], "{text}");
        }
    }
}
