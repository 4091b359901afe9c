//! The interface's languages and their catalogues: which language a reader gets, and every page
//! string and error message in it.
//!
//! One TOML catalogue per language (`i18n/en.toml`, `i18n/zh-CN.toml`), compiled into the binary
//! and parsed once. Keys are `section.name`; values are plain text, never HTML (askama escapes
//! them like any other value), with `{name}` placeholders. Unit tests keep the catalogues' keys
//! equal and every key the templates and the web layer ask for present.
//! Owns nothing else; calls nothing of the project. Used by the page layer, and by the mail the
//! domain writes (accounts' verification mail, the admin's test mail), which is written in its
//! reader's language (`mail.*`, `duration.*`); the domain learns no other use of it.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::LazyLock;

/// A language the interface speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

/// The cookie that remembers a reader's choice.
pub const COOKIE: &str = "lang";

/// How many `Accept-Language` entries are looked at: a browser sends a handful; a longer header
/// is someone's experiment, not a preference.
const MAX_ACCEPT_ENTRIES: usize = 16;

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag, for `<html lang>`, the cookie and the switch.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        self.t("lang.name")
    }

    /// The language a tag asks for: `en`, `en-GB` → English; `zh`, `zh-CN`, `zh-Hans`… →
    /// Chinese (the one Chinese catalogue is simplified).
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::ZhCn)
        } else {
            None
        }
    }

    /// The reader's language: the cookie when it names one we speak, else the most preferred
    /// language of `Accept-Language` that we speak, else English.
    pub fn negotiate(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = cookie.and_then(|c| Lang::ALL.into_iter().find(|l| l.tag() == c)) {
            return lang;
        }
        let Some(header) = accept_language else {
            return Lang::default();
        };
        let mut best: Option<(f32, Lang)> = None;
        for entry in header.split(',').take(MAX_ACCEPT_ENTRIES) {
            let mut parts = entry.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else {
                continue;
            };
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q) && *q > 0.0);
            if let Some(q) = quality {
                if best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::default(), |(_, lang)| lang)
    }

    /// The text of `key`. A key missing from this catalogue (the tests forbid it) shows as
    /// English, then as the key itself, never as an error page.
    pub fn t(self, key: &str) -> &'static str {
        catalogue(self)
            .get(key)
            .or_else(|| catalogue(Lang::En).get(key))
            .map_or_else(|| leak_key(key), String::as_str)
    }

    /// The text of `key` in this language, if the catalogue has it.
    pub fn get(self, key: &str) -> Option<&'static str> {
        catalogue(self).get(key).map(String::as_str)
    }

    /// Every text of a catalogue section (`js.room`) as `(name, text)`, the name the rest of the
    /// key in kebab case (`error.not_live` → `error-not-live`), sorted: a page writes them as
    /// `data-t-{name}` attributes, where its script reads them (`dataset.tErrorNotLive`). The
    /// scripts get their words this way only, so a script never holds a sentence of its own.
    pub fn script_text(self, section: &str) -> Vec<(String, &'static str)> {
        let prefix = format!("{section}.");
        let mut texts: Vec<_> = catalogue(Lang::En)
            .keys()
            .filter_map(|key| key.strip_prefix(&prefix).map(|name| (name, key)))
            .map(|(name, key)| (name.replace(['.', '_'], "-"), self.t(key)))
            .collect();
        texts.sort();
        texts
    }

    /// The text of `key` with its `{name}` placeholders filled.
    pub fn fill(self, key: &str, args: &[(&str, &dyn Display)]) -> String {
        fill(self.t(key), args)
    }

    /// `key.one` for one of something, else `key.other` (a language without plurals says the
    /// same in both), with `{n}` and `args` filled.
    pub fn count(self, key: &str, n: u64, args: &[(&str, &dyn Display)]) -> String {
        let form = if n == 1 { "one" } else { "other" };
        let number = self.number(n);
        let mut all: Vec<(&str, &dyn Display)> = vec![("n", &number)];
        all.extend_from_slice(args);
        self.fill(&format!("{key}.{form}"), &all)
    }

    /// A whole number the way the reader writes it (both languages group by thousands with a comma).
    pub fn number(self, n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A calendar day given as `YYYY-MM-DD` (how the server keeps and labels days), the way the
    /// reader writes a date. Anything else is shown as it is.
    pub fn date(self, iso: &str) -> String {
        let mut parts = iso.splitn(3, '-').map(|p| p.parse::<u32>().ok());
        let (Some(Some(y)), Some(Some(m)), Some(Some(d))) =
            (parts.next(), parts.next(), parts.next())
        else {
            return iso.to_owned();
        };
        let (mm, dd) = (format!("{m:02}"), format!("{d:02}"));
        self.fill(
            "date.day",
            &[("y", &y), ("m", &m), ("d", &d), ("mm", &mm), ("dd", &dd)],
        )
    }

    /// A moment given as `YYYY-MM-DD HH:MM:SS` (UTC), with the date the reader's way.
    pub fn moment(self, text: &str) -> String {
        match text.split_once(' ') {
            Some((day, time)) => format!("{} {time}", self.date(day)),
            None => self.date(text),
        }
    }
}

/// Fills `{name}` placeholders in `template`; an unknown placeholder stays as written.
pub fn fill(template: &str, args: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match args.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(&value.to_string()),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A missing key, kept for the life of the process so [`Lang::t`] can hand out `&'static str`;
/// each distinct key is kept once.
fn leak_key(key: &str) -> &'static str {
    static MISSING: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    // The lock is held only to look up or push one entry, never across anything that can panic.
    let mut missing = MISSING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = missing.iter().find(|k| **k == key) {
        return found;
    }
    tracing::warn!(key, "missing translation key");
    let leaked: &'static str = Box::leak(key.to_owned().into_boxed_str());
    missing.push(leaked);
    leaked
}

const EN_SOURCE: &str = include_str!("../i18n/en.toml");
const ZH_CN_SOURCE: &str = include_str!("../i18n/zh-CN.toml");

fn catalogue(lang: Lang) -> &'static HashMap<String, String> {
    static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| parse(EN_SOURCE));
    static ZH_CN: LazyLock<HashMap<String, String>> = LazyLock::new(|| parse(ZH_CN_SOURCE));
    match lang {
        Lang::En => &EN,
        Lang::ZhCn => &ZH_CN,
    }
}

/// A catalogue as `section.name` → text.
fn parse(source: &str) -> HashMap<String, String> {
    let table: toml::Table = source
        .parse()
        .expect("the catalogues are compiled in, and a unit test parses each");
    let mut flat = HashMap::new();
    flatten("", &table, &mut flat);
    flat
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            toml::Value::String(text) => {
                out.insert(key, text.clone());
            }
            other => panic!("catalogue key {key} is {other:?}, not text"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn keys(lang: Lang) -> BTreeSet<&'static str> {
        catalogue(lang).keys().map(String::as_str).collect()
    }

    #[test]
    fn every_key_is_in_every_catalogue() {
        let en = keys(Lang::En);
        let zh = keys(Lang::ZhCn);
        let only_en: Vec<_> = en.difference(&zh).collect();
        let only_zh: Vec<_> = zh.difference(&en).collect();
        assert!(only_en.is_empty(), "missing from zh-CN.toml: {only_en:?}");
        assert!(only_zh.is_empty(), "missing from en.toml: {only_zh:?}");
    }

    /// The placeholders a text uses.
    fn placeholders(text: &str) -> BTreeSet<String> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned()))
            .collect()
    }

    #[test]
    fn translations_use_only_the_placeholders_english_fills() {
        for (key, zh) in catalogue(Lang::ZhCn) {
            let en = Lang::En.t(key);
            // An error's English is the server's own sentence ({detail}); its translation may
            // name any value the error carries instead (or none: the room page knows only the
            // code). A date's parts are written differently.
            if key.starts_with("errors.")
                || key.starts_with("js.room.error.")
                || key.starts_with("date.")
            {
                continue;
            }
            assert_eq!(placeholders(zh), placeholders(en), "placeholders of {key}");
        }
    }

    /// Every `t("…")`, `count("…"` and `fill("…"` key in the templates, the scripts' catalogue
    /// section, the web layer and the mail the domain writes.
    fn keys_used() -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        let mut scan = |dir: &std::path::Path| {
            let mut stack = vec![dir.to_path_buf()];
            while let Some(path) = stack.pop() {
                if path.is_dir() {
                    for entry in std::fs::read_dir(&path).expect("the source tree is readable") {
                        stack.push(entry.expect("the source tree is readable").path());
                    }
                    continue;
                }
                {
                    let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
                    for call in [
                        "t(\"",
                        "fill(\"",
                        "count(\"",
                        "with(\"",
                        "with2(\"",
                        "count_with(\"",
                    ] {
                        for piece in text.split(call).skip(1) {
                            if let Some((key, _)) = piece.split_once('"') {
                                let is_key = key.contains('.')
                                    && key.starts_with(|c: char| c.is_ascii_lowercase())
                                    && key.chars().all(|c| {
                                        c.is_ascii_lowercase()
                                            || c.is_ascii_digit()
                                            || "._".contains(c)
                                    });
                                if is_key {
                                    used.insert(key.to_owned());
                                }
                            }
                        }
                    }
                }
            }
        };
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        scan(&root.join("templates"));
        scan(&root.join("src/web"));
        scan(&root.join("src/accounts"));
        scan(&root.join("src/mail.rs"));
        used
    }

    #[test]
    fn every_key_the_pages_use_exists() {
        let en = catalogue(Lang::En);
        let missing: Vec<_> = keys_used()
            .into_iter()
            .filter(|k| {
                let plural =
                    en.contains_key(&format!("{k}.one")) && en.contains_key(&format!("{k}.other"));
                // `script_text("js.room")` names a whole section.
                let section = en.keys().any(|key| key.starts_with(&format!("{k}.")));
                !(en.contains_key(k) || plural || section)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "keys used but not in en.toml: {missing:?}"
        );
    }

    /// Every word a script asks for (`t("tBanReason")` in `assets/room.js`) is in its section
    /// (`js.room.ban_reason`), and every page that loads the script writes that section.
    #[test]
    fn every_word_the_scripts_use_exists_and_reaches_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read_dir = |dir: &str| {
            std::fs::read_dir(root.join(dir))
                .expect("the source tree is readable")
                .map(|e| e.expect("the source tree is readable").path())
                .filter(|p| p.is_file())
                .collect::<Vec<_>>()
        };
        let templates: Vec<String> = read_dir("templates")
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("templates are UTF-8"))
            .collect();
        let mut problems = Vec::new();
        for script in read_dir("assets") {
            let Some(stem) = script
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".js"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&script).expect("scripts are UTF-8");
            let section = format!("js.{stem}");
            let known: BTreeSet<String> = Lang::En
                .script_text(&section)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            let mut asked = 0;
            for piece in text.split("t(\"t").skip(1) {
                let Some((name, _)) = piece.split_once('"') else {
                    continue;
                };
                if !name.starts_with(|c: char| c.is_ascii_uppercase())
                    || !name.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    continue;
                }
                asked += 1;
                let mut kebab = String::new();
                for (i, c) in name.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        kebab.push('-');
                    }
                    kebab.push(c.to_ascii_lowercase());
                }
                if !known.contains(&kebab) {
                    problems.push(format!("{stem}.js asks for {name}, not in [{section}]"));
                }
            }
            let loader = format!("src=\"/assets/{stem}.js\"");
            let writer = format!("script_text(\"{section}\")");
            for page in templates.iter().filter(|t| t.contains(&loader)) {
                if asked > 0 && !page.contains(&writer) {
                    problems.push(format!("a page loads {stem}.js without its words"));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_error_code_has_a_message_in_every_language() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(root.join("src/web")).expect("src/web is readable") {
            let text = std::fs::read_to_string(entry.expect("src/web is readable").path())
                .expect("sources are UTF-8");
            for piece in text.split("StatusCode::").skip(1) {
                let Some((_, after)) = piece.split_once(',') else {
                    continue;
                };
                let after = after.trim_start();
                let Some(code) = after
                    .strip_prefix('"')
                    .and_then(|s| s.split_once('"'))
                    .map(|(c, _)| c)
                else {
                    continue;
                };
                if code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !catalogue(Lang::ZhCn).contains_key(&format!("errors.{code}"))
                {
                    missing.push(code.to_owned());
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "error codes without a catalogue entry: {missing:?}"
        );
    }

    #[test]
    fn accept_language_picks_the_preferred_language_spoken() {
        assert_eq!(Lang::negotiate(None, Some("zh-CN,zh;q=0.9")), Lang::ZhCn);
        assert_eq!(
            Lang::negotiate(None, Some("en-US,en;q=0.9,zh;q=0.8")),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(None, Some("fr, zh;q=0.5, en;q=0.4")),
            Lang::ZhCn
        );
        assert_eq!(Lang::negotiate(None, Some("zh;q=0, en;q=0.1")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("de, fr")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some(";;;q=abc,,")), Lang::En);
        assert_eq!(Lang::negotiate(None, None), Lang::En);
        assert_eq!(Lang::negotiate(Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::negotiate(Some("klingon"), Some("zh-CN")), Lang::ZhCn);
    }

    #[test]
    fn numbers_dates_and_placeholders() {
        assert_eq!(Lang::En.number(1_234_567), "1,234,567");
        assert_eq!(Lang::ZhCn.number(999), "999");
        assert_eq!(Lang::ZhCn.date("2025-03-09"), "2025年3月9日");
        assert_eq!(Lang::En.date("2025-03-09"), "2025-03-09");
        assert_eq!(
            Lang::ZhCn.moment("2025-03-09 08:07:06"),
            "2025年3月9日 08:07:06"
        );
        assert_eq!(Lang::En.date("not a date"), "not a date");
        assert_eq!(fill("{a} and {b} {", &[("a", &1)]), "1 and {b} {");
    }
}
