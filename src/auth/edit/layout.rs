//! Changing a TOML document the way a person would have: values keep the spacing and
//! comments around them, and array elements come and go a line at a time.

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::EditError;

/// The account's table in a document, to change it.
pub(super) fn user_table_mut<'a>(
    doc: &'a mut DocumentMut,
    name: &str,
) -> Result<&'a mut dyn TableLike, EditError> {
    doc.get_mut("users")
        .and_then(Item::as_table_like_mut)
        .and_then(|users| users.get_mut(name))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Unsupported {
            user: name.to_owned(),
            what: "the account",
        })
}

/// Sets `key` to `value`, keeping the spacing and comment around an old value.
pub(super) fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    if let Some(Item::Value(old)) = table.get_mut(key) {
        *value.decor_mut() = old.decor().clone();
        *old = value;
    } else {
        table.insert(key, Item::Value(value));
    }
}

pub(super) fn inline(table: Table) -> InlineTable {
    let mut inline = table.into_inline_table();
    inline.fmt();
    inline
}

/// The highest position of any table in the document, so a new one goes after it.
pub(super) fn last_position(table: &Table) -> isize {
    let mut last = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        if let Item::Table(inner) = item {
            last = last.max(last_position(inner));
        }
    }
    last
}

pub(super) fn raw(decor: Option<&toml_edit::RawString>) -> String {
    decor
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Appends a string to an array in the array's own layout. A new or empty array becomes
/// one line per element (keys are long); a one-line array stays on one line; in a
/// multi-line array the new element gets its own line, indented like the last, and a
/// comment at the end of the last line stays on that line.
pub(super) fn push_line(array: &mut Array, line: &str) {
    let multiline = raw(Some(array.trailing())).contains('\n')
        || array.iter().any(|v| {
            raw(v.decor().prefix()).contains('\n') || raw(v.decor().suffix()).contains('\n')
        });
    if array.is_empty() || !multiline {
        if array.is_empty() {
            array.set_trailing("\n");
            array.set_trailing_comma(true);
            array.push_formatted(Value::from(line).decorated("\n    ", ""));
        } else {
            array.push(line);
        }
        return;
    }
    let trailing_comma = array.trailing_comma();
    let count = array.len();
    let Some(last) = array.get_mut(count - 1) else {
        return;
    };
    let indent = raw(last.decor().prefix())
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .to_owned();
    // What follows the last element up to `]`: without a trailing comma that starts
    // with the element's own suffix, which would otherwise end up before the new comma.
    let mut tail = String::new();
    if !trailing_comma {
        tail = raw(last.decor().suffix());
        last.decor_mut().set_suffix("");
    }
    tail.push_str(&raw(Some(array.trailing())));
    let (rest_of_line, before_bracket) = match tail.find('\n') {
        Some(i) => (tail[..=i].to_owned(), format!("\n{}", &tail[i + 1..])),
        None => (format!("{tail}\n"), String::new()),
    };
    array.set_trailing_comma(true);
    array.set_trailing(before_bracket);
    array.push_formatted(Value::from(line).decorated(format!("{rest_of_line}{indent}"), ""));
}

/// Removes element `index` with its line: the comment lines above it and the comment at
/// the end of its line go with it.
pub(super) fn remove_line(array: &mut Array, index: usize) {
    if index >= array.len() {
        return;
    }
    let removed = array.remove(index);
    let prefix = raw(removed.decor().prefix());
    let Some(newline) = prefix.find('\n') else {
        // A one-line array: the next element takes the removed one's spacing.
        if let Some(next) = array.get_mut(index) {
            next.decor_mut().set_prefix(prefix);
        }
        return;
    };
    // Keep the end of the line before the removed element; drop the rest of its own line,
    // which is at the start of whatever follows it.
    let keep = &prefix[..=newline];
    let join = |after: &str| -> String {
        let rest = after.find('\n').map_or("", |i| &after[i + 1..]);
        format!("{keep}{rest}")
    };
    match array.get_mut(index) {
        Some(next) => {
            let joined = join(&raw(next.decor().prefix()));
            next.decor_mut().set_prefix(joined);
        }
        None => {
            let joined = join(&raw(Some(array.trailing())));
            array.set_trailing(joined);
        }
    }
}
