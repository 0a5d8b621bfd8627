//! Remote paths as text, the way the server reads them: `/`-separated, seen from the
//! user's home, with `.` and `..` resolved as text and `..` at `/` staying at `/`.

/// `dir` and `name` joined by one `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Splits a path before its last component: `("docs/", "a.txt")`, `("", "a.txt")`,
/// `("/", "")` for `/`.
pub fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The last non-empty component: `a.txt` for `/docs/a.txt` or `docs/a.txt/`; `/` for `/`.
pub fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" };
    }
    split_last(trimmed).1
}

/// The absolute, normalised form of `path` seen from `cwd` (itself absolute).
pub fn resolve(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let full = if path.starts_with('/') {
        path.to_owned()
    } else {
        join(cwd, path)
    };
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_splits() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/in", "a"), "/in/a");
        assert_eq!(join("/in/", "a"), "/in/a");
        assert_eq!(join("", "a"), "a");
        assert_eq!(split_last("docs/a.txt"), ("docs/", "a.txt"));
        assert_eq!(split_last("a.txt"), ("", "a.txt"));
        assert_eq!(split_last("/"), ("/", ""));
        assert_eq!(base_name("/docs/a.txt"), "a.txt");
        assert_eq!(base_name("docs/"), "docs");
        assert_eq!(base_name("/"), "/");
    }

    #[test]
    fn resolves_like_the_server() {
        assert_eq!(resolve("/", "docs"), "/docs");
        assert_eq!(resolve("/docs", ".."), "/");
        assert_eq!(resolve("/docs", "../../.."), "/");
        assert_eq!(resolve("/a/b", "./c/../d/"), "/a/b/d");
        assert_eq!(resolve("/a", "/x//y"), "/x/y");
        assert_eq!(resolve("/a", ""), "/a");
    }
}
