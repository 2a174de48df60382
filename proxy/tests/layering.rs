//! The proxy's modules form layers: the graph of `crate::` references between its top-level
//! modules (and between the sibling submodules inside each of them) has no cycles.
//!
//! The check reads `proxy/src/**/*.rs` as text: comments and string literals are skipped,
//! items under `#[cfg(test)]` (inline test modules and `mod tests;` files) are not counted,
//! and every path that starts with `crate::`, `super::` or `self::` is resolved to the module
//! it names (`use` groups included). A module declared in `lib.rs` is a top-level module;
//! `lib.rs` itself (declarations and re-exports) and `main.rs` (a separate crate) are not
//! nodes. A cycle fails the test with the cycle and the lines that make each of its edges.
//!
//! The same scan checks the crate's error style: one `thiserror` error enum
//! ([`zai_proxy::ProxyError`]).
//!
//! `ZAI_LAYERING_PRINT=1 cargo test -p zai-proxy --test layering -- --nocapture` prints the
//! whole top-level graph.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Tokens of Rust source without comments, string, char and number literals.
fn lex(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let n = chars.len();
    let bump_lines = |s: &[char]| s.iter().filter(|c| **c == '\n').count();
    while i < n {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && i + 1 < n && chars[i + 1] == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            // Block comments nest.
            let start = i;
            let mut depth = 0;
            while i < n {
                if chars[i] == '/' && i + 1 < n && chars[i + 1] == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && i + 1 < n && chars[i + 1] == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += bump_lines(&chars[start..i]);
        } else if let Some(end) = raw_string_end(&chars, i) {
            line += bump_lines(&chars[i..end]);
            i = end;
        } else if c == '"' || (c == 'b' && i + 1 < n && chars[i + 1] == '"') {
            let start = i;
            i += if c == 'b' { 2 } else { 1 };
            while i < n && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            line += bump_lines(&chars[start..i.min(n)]);
        } else if c == '\'' || (c == 'b' && i + 1 < n && chars[i + 1] == '\'') {
            // A char literal ('x', '\n', '\u{..}', b'x') or a lifetime ('a).
            let q = if c == 'b' { i + 1 } else { i };
            if q + 2 < n && chars[q + 1] == '\\' {
                let mut j = q + 2;
                while j < n && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if q + 2 < n && chars[q + 2] == '\'' {
                i = q + 3;
            } else {
                // Lifetime or label: skip the quote, the name lexes as an identifier.
                i = q + 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < n && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if !c.is_ascii_digit() {
                let word = word.strip_prefix("r#").map(str::to_owned).unwrap_or(word);
                out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                });
            }
        } else if c == ':' && i + 1 < n && chars[i + 1] == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    out
}

/// If a raw (byte) string literal starts at `i`, the index after it.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // `r` must start a token, not end an identifier such as `bar`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// One reference from a module to another module's path.
#[derive(Debug, Clone)]
struct Reference {
    /// The referring module (`["forward", "retry"]`).
    from: Vec<String>,
    /// The absolute path referred to (`["state", "AppState"]`).
    to: Vec<String>,
    file: String,
    line: usize,
}

struct FileScan {
    refs: Vec<Reference>,
    /// Child modules declared `#[cfg(test)] mod x;` (their files are test code).
    test_children: Vec<Vec<String>>,
}

fn is_ident(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(w), .. }) if w == word)
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

fn is_sep(t: Option<&Token>) -> bool {
    matches!(
        t,
        Some(Token {
            tok: Tok::PathSep,
            ..
        })
    )
}

/// Does `#[cfg(test)]` (or `#![cfg(test)]`) start at `i`? Returns the index after it.
fn cfg_test_at(toks: &[Token], i: usize) -> Option<usize> {
    if !is_punct(toks.get(i), '#') {
        return None;
    }
    let mut j = i + 1;
    if is_punct(toks.get(j), '!') {
        j += 1;
    }
    let pattern = ["[", "cfg", "(", "test", ")", "]"];
    for p in pattern {
        let ok = match p {
            "[" | "(" | ")" | "]" => is_punct(toks.get(j), p.chars().next().unwrap_or(' ')),
            word => is_ident(toks.get(j), word),
        };
        if !ok {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// The index after the item that starts at `i` (after its attributes).
fn skip_item(toks: &[Token], mut i: usize) -> usize {
    // Further attributes.
    while is_punct(toks.get(i), '#') {
        let mut depth = 0;
        i += 1;
        while i < toks.len() {
            if is_punct(toks.get(i), '[') {
                depth += 1;
            } else if is_punct(toks.get(i), ']') {
                depth -= 1;
                if depth == 0 {
                    i += 1;
                    break;
                }
            }
            i += 1;
        }
    }
    // Visibility.
    let mut k = i;
    if is_ident(toks.get(k), "pub") {
        k += 1;
        if is_punct(toks.get(k), '(') {
            while k < toks.len() && !is_punct(toks.get(k), ')') {
                k += 1;
            }
            k += 1;
        }
    }
    let ends_at_semicolon = matches!(
        toks.get(k).map(|t| &t.tok),
        Some(Tok::Ident(w)) if ["use", "const", "static", "type", "let"].contains(&w.as_str())
    );
    let mut depth = 0i32;
    while i < toks.len() {
        match &toks[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']') => depth -= 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 && !ends_at_semicolon {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The paths a path expression starting at `i` names, expanding `{..}` groups; `prefix` is
/// what precedes it. Returns the paths and the index after the path.
fn read_path(toks: &[Token], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(w)) => {
                path.push(w.clone());
                i += 1;
                if is_sep(toks.get(i)) {
                    i += 1;
                    continue;
                }
                return (vec![path], i);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                let mut all = Vec::new();
                loop {
                    if is_punct(toks.get(i), '}') {
                        return (all, i + 1);
                    }
                    if is_punct(toks.get(i), ',') {
                        i += 1;
                        continue;
                    }
                    let before = i;
                    let (paths, next) = read_path(toks, i, path.clone());
                    all.extend(paths);
                    i = next;
                    // `x as y`
                    if is_ident(toks.get(i), "as") {
                        i += 2;
                    }
                    if i == before {
                        i += 1;
                    }
                    if i >= toks.len() {
                        return (all, i);
                    }
                }
            }
            Some(Tok::Punct('*')) => return (vec![path], i + 1),
            _ => return (vec![path], i),
        }
    }
}

/// The references a file makes; `module` is the file's module path.
fn scan_file(file: &str, src: &str, module: &[String]) -> FileScan {
    let toks = lex(src);
    let mut refs = Vec::new();
    let mut test_children = Vec::new();
    // Inline modules: (name, brace depth inside it).
    let mut inline: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < toks.len() {
        if let Some(after) = cfg_test_at(&toks, i) {
            if is_punct(toks.get(i + 1), '!') {
                // The whole file is test code.
                return FileScan {
                    refs: Vec::new(),
                    test_children,
                };
            }
            let mut j = after;
            while matches!(toks.get(j).map(|t| &t.tok), Some(Tok::Ident(w)) if w == "pub") {
                j += 1;
            }
            if is_ident(toks.get(j), "mod")
                && is_punct(toks.get(j + 2), ';')
                && let Some(Token {
                    tok: Tok::Ident(name),
                    ..
                }) = toks.get(j + 1)
            {
                let mut child = module.to_vec();
                child.extend(inline.iter().map(|(n, _)| n.clone()));
                child.push(name.clone());
                test_children.push(child);
            }
            i = skip_item(&toks, after);
            continue;
        }
        let current = || {
            let mut m = module.to_vec();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (
                    Some(Token {
                        tok: Tok::Ident(name),
                        ..
                    }),
                    true,
                ) = (toks.get(i + 1), is_punct(toks.get(i + 2), '{'))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w)
                if (w == "crate" || w == "super" || w == "self")
                    && is_sep(toks.get(i + 1))
                    // Not the tail of a longer path (`$crate::`, `a::self`).
                    && !(i > 0 && is_sep(toks.get(i - 1))) =>
            {
                let line = toks[i].line;
                let mut base = if w == "crate" { Vec::new() } else { current() };
                let mut j = i;
                if w == "self" || w == "crate" {
                    j += 2;
                } else {
                    while is_ident(toks.get(j), "super") && is_sep(toks.get(j + 1)) {
                        base.pop();
                        j += 2;
                    }
                }
                let (paths, next) = read_path(&toks, j, base);
                for to in paths {
                    refs.push(Reference {
                        from: current(),
                        to,
                        file: file.to_owned(),
                        line,
                    });
                }
                i = next.max(i + 1);
            }
            _ => i += 1,
        }
    }
    FileScan {
        refs,
        test_children,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `forward/retry.rs` → `["forward", "retry"]`, `tokens/mod.rs` → `["tokens"]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

struct Crate {
    refs: Vec<Reference>,
    /// Every module with a file or an inline `mod x {`, by path.
    modules: HashSet<Vec<String>>,
    top: BTreeSet<String>,
}

fn scan_crate() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut refs = Vec::new();
    let mut test_modules: Vec<Vec<String>> = Vec::new();
    let mut modules = HashSet::new();
    let mut top = BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        if rel == Path::new("main.rs") {
            continue;
        }
        let module = module_of(rel);
        let text = fs::read_to_string(path).expect("read source");
        let scan = scan_file(&rel.display().to_string(), &text, &module);
        if let Some(first) = module.first() {
            top.insert(first.clone());
        }
        for k in 1..=module.len() {
            modules.insert(module[..k].to_vec());
        }
        refs.extend(scan.refs);
        test_modules.extend(scan.test_children);
    }
    refs.retain(|r| !test_modules.iter().any(|t| r.from.starts_with(t)));
    Crate { refs, modules, top }
}

type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Edges `from → to` with the places that make them (`file:line`).
fn add_edge(graph: &mut Graph, from: &str, to: &str, at: String) {
    let places = graph
        .entry(from.to_owned())
        .or_default()
        .entry(to.to_owned())
        .or_default();
    if !places.contains(&at) {
        places.push(at);
    }
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: HashSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            if let Some(edges) = self.graph.get(v) {
                for w in edges.keys() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.on_stack.contains(w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// One cycle through the component, as `a → b → … → a`.
fn one_cycle(graph: &Graph, component: &[String]) -> Vec<String> {
    let inside: HashSet<&str> = component.iter().map(String::as_str).collect();
    let start = component[0].as_str();
    // Breadth-first from start back to start, inside the component.
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !inside.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.to_owned()];
                let mut at = v;
                while at != start {
                    path.push(at.to_owned());
                    at = prev[at];
                }
                path.push(start.to_owned());
                path.reverse();
                return path;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    component.to_vec()
}

fn report(graph: &Graph, components: &[Vec<String>]) -> String {
    let mut text = String::new();
    for component in components {
        let cycle = one_cycle(graph, component);
        text.push_str(&format!(
            "cycle among {{{}}}: {}\n",
            component.join(", "),
            cycle.join(" → ")
        ));
        for pair in cycle.windows(2) {
            let at = &graph[&pair[0]][&pair[1]];
            text.push_str(&format!("  {} → {}: {}\n", pair[0], pair[1], at.join(", ")));
        }
    }
    text
}

/// The layers of an acyclic graph, bottom first: a module's layer is one above the highest
/// layer it imports from.
fn layers(graph: &Graph) -> Vec<Vec<String>> {
    fn layer_of(graph: &Graph, m: &str, memo: &mut BTreeMap<String, usize>) -> usize {
        if let Some(l) = memo.get(m) {
            return *l;
        }
        let l = graph
            .get(m)
            .into_iter()
            .flat_map(|e| e.keys())
            .map(|d| layer_of(graph, d, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(m.to_owned(), l);
        l
    }
    let mut memo = BTreeMap::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in graph.keys() {
        let l = layer_of(graph, m, &mut memo);
        if out.len() <= l {
            out.resize(l + 1, Vec::new());
        }
        out[l].push(m.clone());
    }
    out
}

/// The top-level module graph (edges inside one module are not in it).
fn top_level_graph(c: &Crate) -> Graph {
    let mut graph = Graph::new();
    for top in &c.top {
        graph.entry(top.clone()).or_default();
    }
    for r in &c.refs {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        if from != to && c.top.contains(to) {
            add_edge(&mut graph, from, to, format!("{}:{}", r.file, r.line));
        }
    }
    graph
}

/// Inside each top-level module `m`, the graph of its direct submodules (`m::a → m::b`);
/// references to `m`'s own root (`mod.rs`) are not edges: the root declares and re-exports
/// its children.
fn sibling_graph(c: &Crate, top: &str) -> Graph {
    let mut graph = Graph::new();
    for r in &c.refs {
        if r.from.first().map(String::as_str) != Some(top)
            || r.to.first().map(String::as_str) != Some(top)
            || r.from.len() < 2
            || r.to.len() < 2
        {
            continue;
        }
        let from = format!("{top}::{}", r.from[1]);
        if !c.modules.contains(&r.to[..2]) {
            continue; // an item of the root
        }
        let to = format!("{top}::{}", r.to[1]);
        if from != to {
            add_edge(&mut graph, &from, &to, format!("{}:{}", r.file, r.line));
        }
    }
    graph
}

#[test]
fn top_level_modules_form_layers() {
    let c = scan_crate();
    let graph = top_level_graph(&c);
    if std::env::var_os("ZAI_LAYERING_PRINT").is_some() {
        for (from, edges) in &graph {
            let to: Vec<&str> = edges.keys().map(String::as_str).collect();
            println!("{from} → {}", to.join(", "));
        }
    }
    // The scan must see the crate: a change that made it blind would pass vacuously.
    assert!(c.top.len() >= 10, "top-level modules: {:?}", c.top);
    assert!(
        graph.get("server").is_some_and(|e| e.contains_key("state")),
        "the scan no longer sees server → state"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "the top-level modules have cycles:\n{}",
        report(&graph, &found)
    );
    if std::env::var_os("ZAI_LAYERING_PRINT").is_some() {
        for (i, layer) in layers(&graph).iter().enumerate() {
            println!("layer {i}: {}", layer.join(", "));
        }
    }
}

#[test]
fn submodules_of_each_module_form_layers() {
    let c = scan_crate();
    let mut failures = String::new();
    for top in &c.top {
        let graph = sibling_graph(&c, top);
        if std::env::var_os("ZAI_LAYERING_PRINT").is_some() {
            for (from, edges) in &graph {
                let to: Vec<&str> = edges.keys().map(String::as_str).collect();
                println!("{from} → {}", to.join(", "));
            }
        }
        failures.push_str(&report(&graph, &cycles(&graph)));
    }
    assert!(failures.is_empty(), "submodules have cycles:\n{failures}");
}

/// `file: Name` of every enum that derives `thiserror::Error` (test code included).
fn thiserror_enums() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        let toks = lex(&fs::read_to_string(path).expect("read source"));
        let mut i = 0;
        while i < toks.len() {
            // `#[derive(..., thiserror::Error, ...)]` (or a bare `Error` imported from it).
            let derive = is_punct(toks.get(i), '#')
                && is_punct(toks.get(i + 1), '[')
                && is_ident(toks.get(i + 2), "derive");
            if !derive {
                i += 1;
                continue;
            }
            let mut j = i + 3;
            let mut thiserror = false;
            while j < toks.len() && !is_punct(toks.get(j), ']') {
                if is_ident(toks.get(j), "thiserror")
                    || (is_ident(toks.get(j), "Error") && !is_sep(toks.get(j - 1)))
                {
                    thiserror = true;
                }
                j += 1;
            }
            // The item: skip further attributes and the visibility.
            while j < toks.len()
                && !matches!(&toks[j].tok, Tok::Ident(w) if w == "enum" || w == "struct" || w == "union")
            {
                j += 1;
            }
            if thiserror
                && is_ident(toks.get(j), "enum")
                && let Some(Token {
                    tok: Tok::Ident(name),
                    ..
                }) = toks.get(j + 1)
            {
                found.push(format!("{rel}: {name}"));
            }
            i = j;
        }
    }
    found
}

#[test]
fn the_crate_has_one_error_enum() {
    // `config::ConfigError` (a struct: the list of invalid variables, carried by
    // `ProxyError::Config`) is not an enum; `wire::LocalFailure` (the proxy's own answers)
    // and `zai_codes::ZaiError` (what a Z.AI 429 says) are not errors.
    assert_eq!(thiserror_enums(), ["error.rs: ProxyError"]);
}

#[test]
fn the_scan_resolves_paths() {
    let src = "//! doc crate::zzz\n\
        use crate::{a::{b, c as d}, e};\n\
        use super::super::f::g;\n\
        fn x() { let s = \"crate::nope\"; crate::h::i(); self::j::k(); }\n\
        #[cfg(test)]\n\
        mod tests { use crate::t; use super::u; }\n\
        #[cfg(test)]\n\
        mod more;\n\
        mod inline { use super::v; }\n";
    let scan = scan_file("x.rs", src, &["m".to_owned(), "n".to_owned()]);
    let to: Vec<String> = scan.refs.iter().map(|r| r.to.join("::")).collect();
    assert_eq!(
        to,
        ["a::b", "a::c", "e", "f::g", "h::i", "m::n::j::k", "m::n::v"]
    );
    assert_eq!(scan.test_children, [vec!["m", "n", "more"]]);
    assert_eq!(scan.refs[3].line, 3);
}
