//! Text that people show each other (nicknames, room names and descriptions, danmaku): the
//! characters that disguise it or hide it. One rule, shared by accounts and rooms.
//!
//! Owns: [`disguise`], [`chat_line`]. Calls: nothing.
//!
//! Refused everywhere: bidirectional overrides, embeddings, isolates and marks (they reorder
//! what follows, so `"evil\u{202E}gpj.exe"` reads as something else), invisible spaces and
//! format characters, fillers that render as nothing, and interlinear annotations. Allowed only
//! where real writing needs them: the zero-width (non-)joiner between two non-ASCII visible
//! characters (emoji sequences, Persian, Indic scripts), a variation selector right after a
//! visible character (`❤️`), and tag characters inside a subdivision flag (`🏴` + tags + the
//! cancel tag). A text with nothing visible in it (only spaces, blank braille, joiners) is
//! refused too.

/// Always invisible or reordering; never needed in a name or a comment.
fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{061C}'                    // Arabic letter mark
        | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
        | '\u{180E}'                    // Mongolian vowel separator
        | '\u{200B}'                    // zero-width space
        | '\u{200E}' | '\u{200F}'       // left-to-right and right-to-left marks
        | '\u{2028}' | '\u{2029}'       // line and paragraph separators
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'       // bidi isolates
        | '\u{206A}'..='\u{206F}'       // deprecated format characters
        | '\u{FEFF}'                    // zero-width no-break space
        | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation
        | '\u{1BCA0}'..='\u{1BCA3}'     // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'     // musical formatting
        | '\u{E0000}'..='\u{E001F}'     // language tag and unassigned tags
    )
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0020}'..='\u{E007F}')
}

const CANCEL_TAG: char = '\u{E007F}';
/// 🏴, the base of subdivision flags such as 🏴󠁧󠁢󠁳󠁣󠁴󠁿.
const BLACK_FLAG: char = '\u{1F3F4}';

/// Renders as nothing (or as empty space) on its own.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '\u{2800}'
}

/// What came before a character, for the characters that must be attached to something.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    /// The start of the text, a blank or a joiner: nothing to attach to.
    Nothing,
    /// A visible character (`ascii` tells Latin letters, digits and signs apart), or a variation
    /// selector attached to one.
    Visible { ascii: bool, selected: bool },
    /// Inside a flag's tag sequence, which must end with the cancel tag.
    Tags,
}

/// The first character that disguises `text` (see the module doc), if any. A text with no
/// visible character gives its first character; an empty text passes (callers decide whether
/// empty is allowed).
pub fn disguise(text: &str) -> Option<char> {
    let mut before = Before::Nothing;
    let mut previous = None;
    let mut visible = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if before == Before::Tags && !is_tag(c) {
            // A tag sequence that does not end with the cancel tag.
            return Some(c);
        }
        before = if is_hidden(c) {
            return Some(c);
        } else if is_joiner(c) {
            let after = chars.peek().copied();
            let joins = matches!(before, Before::Visible { ascii: false, .. })
                && after.is_some_and(|n| is_visible(n) && !n.is_ascii());
            if !joins {
                return Some(c);
            }
            Before::Nothing
        } else if is_variation_selector(c) {
            match before {
                Before::Visible {
                    ascii,
                    selected: false,
                } => Before::Visible {
                    ascii,
                    selected: true,
                },
                _ => return Some(c),
            }
        } else if is_tag(c) {
            let starts = previous == Some(BLACK_FLAG);
            match (before, c) {
                (Before::Tags, CANCEL_TAG) => Before::Visible {
                    ascii: false,
                    selected: true,
                },
                (Before::Tags, _) => Before::Tags,
                _ if starts && c != CANCEL_TAG => Before::Tags,
                _ => return Some(c),
            }
        } else if is_blank(c) {
            Before::Nothing
        } else {
            visible = true;
            Before::Visible {
                ascii: c.is_ascii(),
                selected: false,
            }
        };
        previous = Some(c);
    }
    if before == Before::Tags {
        return text.chars().last();
    }
    if !visible {
        return text.chars().next();
    }
    None
}

/// Why a chat line (a danmaku, a comment on a recording) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineProblem {
    Empty,
    /// Longer than this many characters.
    TooLong(usize),
    /// This character disguises the text (see [`disguise`]).
    Disguised(char),
}

/// A chat line as it is kept: control characters dropped, then trimmed; refused when nothing is
/// left, when it is longer than `max` characters, or when it is disguised.
pub fn chat_line(text: &str, max: usize) -> Result<String, LineProblem> {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = text.trim();
    if text.is_empty() {
        return Err(LineProblem::Empty);
    }
    if text.chars().count() > max {
        return Err(LineProblem::TooLong(max));
    }
    if let Some(c) = disguise(text) {
        return Err(LineProblem::Disguised(c));
    }
    Ok(text.to_owned())
}

fn is_visible(c: char) -> bool {
    !(is_hidden(c) || is_joiner(c) || is_variation_selector(c) || is_tag(c) || is_blank(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_and_real_writing_pass() {
        for ok in [
            "",
            "Alice",
            "hello 你好",
            "Ünïcödé",
            "❤\u{FE0F} love it",
            "👨\u{200D}👩\u{200D}👧 family",
            "👁\u{FE0F}\u{200D}🗨\u{FE0F}",
            "#\u{FE0F}\u{20E3}",
            "👍🏽",
            "می\u{200C}خواهم",
            "क्\u{200D}ष",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} Scotland",
            "line one\nline two",
            "⠓⠑⠇⠇⠕\u{2800}⠺⠕⠗⠇⠙",
        ] {
            assert_eq!(disguise(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn disguises_are_named() {
        for (bad, culprit) in [
            ("evil\u{202E}gpj.exe", '\u{202E}'),
            ("a\u{2066}b\u{2069}", '\u{2066}'),
            ("a\u{200F}b", '\u{200F}'),
            ("\u{200B}", '\u{200B}'),
            ("Ali\u{200B}ce", '\u{200B}'),
            ("\u{FEFF}host", '\u{FEFF}'),
            ("a\u{2060}b", '\u{2060}'),
            ("\u{3164}", '\u{3164}'),
            ("soft\u{00AD}hyphen", '\u{00AD}'),
            // Joiners only between non-ASCII visible characters.
            ("\u{200D}", '\u{200D}'),
            ("\u{200D}\u{200D}\u{200D}", '\u{200D}'),
            ("Al\u{200D}ice", '\u{200D}'),
            ("Al\u{200C}ice", '\u{200C}'),
            ("你\u{200D}", '\u{200D}'),
            ("你\u{200D}\u{200D}好", '\u{200D}'),
            // Variation selectors only right after something visible.
            ("\u{FE0F}", '\u{FE0F}'),
            ("\u{FE0F}\u{FE0F}\u{FE0F}", '\u{FE0F}'),
            ("a \u{FE0F}", '\u{FE0F}'),
            ("❤\u{FE0F}\u{FE0F}", '\u{FE0F}'),
            ("\u{E0100}", '\u{E0100}'),
            // Tags only inside a flag that ends with the cancel tag.
            ("host\u{E0068}\u{E006F}", '\u{E0068}'),
            ("\u{E0001}en", '\u{E0001}'),
            ("🏴\u{E0067}\u{E0062}", '\u{E0062}'),
            ("🏴\u{E0067} x", ' '),
            ("\u{E007F}", '\u{E007F}'),
            // Nothing visible at all.
            ("   ", ' '),
            ("\u{2800}\u{2800}", '\u{2800}'),
        ] {
            assert_eq!(disguise(bad), Some(culprit), "{bad:?}");
        }
    }
}
