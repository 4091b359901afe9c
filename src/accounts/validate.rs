//! The rules a username, email, password, nickname and room text must meet. Pure functions;
//! each error message tells a person what to change. Which characters disguise a text is
//! [`crate::text`]'s rule, shared with the danmaku.

use crate::text::disguise;

/// The longest username, in characters.
const USERNAME_MAX_CHARS: usize = 32;
/// The longest email address, in bytes (RFC 5321's limit on a path).
const EMAIL_MAX_BYTES: usize = 254;

pub fn username(value: &str) -> Result<(), String> {
    let count = value.chars().count();
    if !(3..=USERNAME_MAX_CHARS).contains(&count) {
        return Err(format!(
            "A username has 3 to {USERNAME_MAX_CHARS} characters; this one has {count}."
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "A username may only use letters, digits, '_' and '-'; {bad:?} is not allowed."
        ));
    }
    Ok(())
}

pub fn email(value: &str) -> Result<(), String> {
    let invalid = || {
        Err(format!(
            "{value:?} is not an email address like name@example.com."
        ))
    };
    if value.len() > EMAIL_MAX_BYTES || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid();
    }
    let Some((local, domain)) = value.split_once('@') else {
        return invalid();
    };
    let labels_ok = domain.contains('.') && domain.split('.').all(|label| !label.is_empty());
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !labels_ok {
        return invalid();
    }
    if value.parse::<lettre::Address>().is_err() {
        return invalid();
    }
    Ok(())
}

/// What a login form's name field may hold: a username or an email address, no longer than
/// registration allows either, so an oversized name is refused before it costs anything. The
/// byte length is looked at first, so a huge value is never scanned.
pub fn login(value: &str) -> Result<(), String> {
    let fits = value.len() <= EMAIL_MAX_BYTES
        && (value.contains('@') || value.chars().count() <= USERNAME_MAX_CHARS);
    if fits {
        Ok(())
    } else {
        Err(format!(
            "Log in with a username (at most {USERNAME_MAX_CHARS} characters) or an email \
             address (at most {EMAIL_MAX_BYTES} characters)."
        ))
    }
}

pub fn password(value: &str) -> Result<(), String> {
    let count = value.chars().count();
    if count < 8 {
        return Err(format!(
            "A password needs at least 8 characters; this one has {count}."
        ));
    }
    if count > 256 {
        return Err("A password has at most 256 characters.".to_owned());
    }
    Ok(())
}

/// Returns the nickname as it will be stored (trimmed).
pub fn nickname(value: &str) -> Result<String, String> {
    single_line(value, 32, "A nickname")
}

pub fn room_name(value: &str) -> Result<String, String> {
    single_line(value, 64, "A room name")
}

/// The longest title a recording may be given, in characters (a default title, the room's name
/// and the live title, is at most 64 + 3 + 100).
pub const RECORD_TITLE_MAX_CHARS: usize = 200;

/// Returns a recording's new title as it will be stored (trimmed).
pub fn record_title(value: &str) -> Result<String, String> {
    single_line(value, RECORD_TITLE_MAX_CHARS, "A recording's title")
}

/// A download's title as it will be stored (trimmed).
pub fn download_title(value: &str) -> Result<String, String> {
    single_line(value, 100, "A title")
}

/// A download's version as it will be stored (trimmed); it may be empty.
pub fn download_version(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    single_line(value, 40, "A version")
}

/// Returns the description as it will be stored (trimmed, line ends as `\n`).
pub fn description(value: &str) -> Result<String, String> {
    let text = value.trim().replace("\r\n", "\n");
    let count = text.chars().count();
    if count > 1000 {
        return Err(format!(
            "A description has at most 1000 characters; this one has {count}."
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') || disguise(&text).is_some() {
        return Err("A description may not contain control or invisible characters.".to_owned());
    }
    Ok(text)
}

fn single_line(value: &str, max: usize, what: &str) -> Result<String, String> {
    let text = value.trim();
    let count = text.chars().count();
    if count == 0 || count > max {
        return Err(format!(
            "{what} has 1 to {max} characters; this one has {count}."
        ));
    }
    if text.chars().any(char::is_control) || disguise(text).is_some() {
        return Err(format!(
            "{what} may not contain control or invisible characters."
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["bob", "alice_01", "王小明", "小明_01", "Ünïcödé-ok", "a-b"] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "a b",
            "a\0b",
            "evil/../x",
            "🙂🙂🙂",
            "x".repeat(33).as_str(),
            "bob!",
        ] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@.b.co", "a@b.co\n",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logins_are_no_longer_than_a_username_or_an_email() {
        let longest_email = format!("{}@{}.example", "a".repeat(64), "b".repeat(181));
        assert_eq!(longest_email.len(), 254);
        for ok in [
            "",
            "x",
            &"名".repeat(32),
            &longest_email,
            "alice@example.com",
        ] {
            assert!(login(ok).is_ok(), "{ok}");
        }
        for bad in [
            "x".repeat(33),
            "名".repeat(33),
            format!("a{longest_email}"),
            "@".repeat(255),
            "x".repeat(1_000_000),
        ] {
            assert!(login(&bad).is_err(), "{} bytes", bad.len());
        }
    }

    #[test]
    fn nicknames_are_trimmed_and_refuse_disguises() {
        assert_eq!(nickname("  Alice 🌸 ").unwrap(), "Alice 🌸");
        assert!(nickname("👨\u{200D}👩\u{200D}👧").is_ok());
        for bad in [
            "",
            "   ",
            "a\u{202E}b",
            "a\u{200B}b",
            "a\tb",
            &"x".repeat(33),
        ] {
            assert!(nickname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn descriptions_keep_newlines_only() {
        assert_eq!(description("line 1\r\nline 2").unwrap(), "line 1\nline 2");
        assert!(description("bell\u{7}").is_err());
        assert!(description(&"x".repeat(1001)).is_err());
    }
}
