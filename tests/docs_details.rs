//! `docs/api.md` says exactly what the service answers: every `detail` it lists is a
//! string the code can produce. The details are taken from the doc in three forms:
//! - the backticked text in the `Detail` column of a table;
//! - `{"detail": "..."}` anywhere;
//! - backticked text right after a 4xx or 5xx status and a space or line break
//!   (`400 \`Invalid timestamp\``).
//!
//! The code's strings are the string literals of `src/` outside doc comments and `mod
//! tests`; a format placeholder (`{}`, `{limit}`, `{0}`) stands for any text, so the doc's
//! own placeholders (`{N}`, `(...)`, `X-Tao-...`) match it.

use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};

/// Every detail string `docs/api.md` lists.
fn doc_details(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut detail_column: Option<usize> = None;
    for line in doc.lines() {
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        if !line.trim_start().starts_with('|') {
            detail_column = None;
        } else if let Some(i) = cells.iter().position(|c| *c == "Detail") {
            detail_column = Some(i);
        } else if let Some(cell) = detail_column.and_then(|i| cells.get(i)) {
            out.extend(backticked(cell).into_iter().filter(|d| !d.starts_with('{')));
        }
    }
    let mut rest = doc;
    while let Some(i) = rest.find("{\"detail\": \"") {
        rest = &rest[i + 12..];
        // `<text>` and `...` stand for any detail.
        let placeholder = |d: &str| d.starts_with('<') || d == "...";
        if let Some(end) = rest.find("\"}").filter(|&end| !placeholder(&rest[..end])) {
            out.push(rest[..end].to_owned());
        }
    }
    let bytes = doc.as_bytes();
    for (i, _) in doc.match_indices(['\n', ' ']) {
        if bytes.get(i + 1) != Some(&b'`') {
            continue;
        }
        let status = i >= 3 && bytes[i - 3..i].iter().all(u8::is_ascii_digit);
        let starts = i >= 3 && matches!(bytes[i - 3], b'4' | b'5');
        let alone = i < 4 || !bytes[i - 4].is_ascii_alphanumeric();
        if status && starts && alone {
            let text = &doc[i + 2..];
            if let Some(end) = text.find('`') {
                let detail = text[..end].replace('\n', " ");
                if !detail.starts_with('{') {
                    out.push(detail);
                }
            }
        }
    }
    // Lines of the doc wrap inside backticks too.
    let mut out: Vec<String> = out
        .into_iter()
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The texts between backticks in `cell`.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The string literals of `tokens`, leaving out doc comments and `mod tests`.
fn literals(tokens: TokenStream, out: &mut Vec<String>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Ident(id) if id == "mod" => {
                if matches!(trees.get(i + 1), Some(TokenTree::Ident(name)) if name == "tests") {
                    i += 3;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "doc" => {
                if matches!(trees.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '=') {
                    i += 3;
                    continue;
                }
            }
            TokenTree::Group(g) => literals(g.stream(), out),
            TokenTree::Literal(lit) => {
                if let Ok(syn::Lit::Str(s)) =
                    syn::parse2::<syn::Lit>(TokenTree::Literal(lit.clone()).into())
                {
                    out.push(s.value());
                }
            }
            _ => {}
        }
        i += 1;
    }
}

fn source_literals(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_literals(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            let tokens: TokenStream = text
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            literals(tokens, out);
        }
    }
}

/// A code string as a pattern: its fixed parts, in order, between format placeholders.
/// `None` when too little of it is fixed text to say anything (`"{}"`, `"{a}: {b}"`).
fn pattern(literal: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                parts.last_mut()?.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                parts.last_mut()?.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                parts.push(String::new());
            }
            c => parts.last_mut()?.push(c),
        }
    }
    let fixed: usize = parts.iter().map(String::len).sum();
    (fixed >= 6).then_some(parts)
}

/// Whether `text` is `parts` joined by non-empty texts.
fn matches(text: &str, parts: &[String]) -> bool {
    let Some(rest) = text.strip_prefix(parts[0].as_str()) else {
        return false;
    };
    if parts.len() == 1 {
        return rest.is_empty();
    }
    // A placeholder takes at least one character, then the next part follows.
    rest.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(rest.len()))
        .any(|i| matches(&rest[i..], &parts[1..]))
}

#[test]
fn every_detail_in_the_api_doc_is_one_the_code_can_produce() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/api.md")).expect("docs/api.md");
    let details = doc_details(&doc);
    // The extraction finds the details of each form.
    for known in [
        "Invalid signature",
        "Coldkey does not match hotkey owner",
        "Daily limit of {N} upload checks exceeded.",
        "Signature already used",
        "You are not validator",
        "S3 operation timeout - try again",
    ] {
        assert!(
            details.iter().any(|d| d == known),
            "{known} not found in {details:#?}"
        );
    }
    let mut code = Vec::new();
    source_literals(&root.join("src"), &mut code);
    let patterns: Vec<Vec<String>> = code.iter().filter_map(|l| pattern(l)).collect();
    let unknown: Vec<&String> = details
        .iter()
        .filter(|d| !patterns.iter().any(|p| matches(d, p)))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/api.md lists details no code produces: {unknown:#?}"
    );
}

#[test]
fn placeholders_match_any_text_and_fixed_text_only_itself() {
    let p = pattern("Daily limit of {} upload checks exceeded.").expect("pattern");
    assert!(matches("Daily limit of {N} upload checks exceeded.", &p));
    assert!(matches("Daily limit of 1000 upload checks exceeded.", &p));
    assert!(!matches("Daily limit of  1000 upload checks exceeded", &p));
    assert!(!matches("Daily limit of upload checks exceeded.", &p));
    let p = pattern("Missing {0} header").expect("pattern");
    assert!(matches("Missing X-Tao-... header", &p));
    assert!(!matches("Missing header", &p));
    assert!(pattern("{a}: {b}").is_none());
    let fixed = pattern("Coldkey does not match hotkey owner").expect("pattern");
    assert!(!matches(
        "coldkey does not own this hotkey on the subnet",
        &fixed
    ));
}
