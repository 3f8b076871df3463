//! Module layering, read from the sources: the API client and the systemd adapter depend on
//! nothing above them (no `api → notify` or `notify → sync` circle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names through `crate::`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.iter().next().expect("a component").to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&f).expect("read source");
        let entry = deps.entry(module.clone()).or_default();
        // Code only: doc links and comments may name any module.
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for part in line.split("crate::").skip(1) {
                let names: Vec<&str> = match part.strip_prefix('{') {
                    // `crate::{a, b::c}`: each path's first name.
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap_or_default())
                        .collect(),
                    None => vec![part],
                };
                for n in names {
                    let n: String = n
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() && n != module {
                        entry.insert(n);
                    }
                }
            }
        }
    }
    deps
}

#[test]
fn the_api_client_and_the_systemd_adapter_depend_on_nothing_above_them() {
    let deps = dependencies();
    let of = |m: &str| deps.get(m).cloned().unwrap_or_default();
    assert!(
        of("api").contains("config"),
        "the reader sees crate:: paths"
    );
    for above in [
        "notify", "sync", "stream", "daemon", "status", "metrics", "cli",
    ] {
        assert!(!of("api").contains(above), "api depends on {above}");
    }
    let notify = of("notify");
    assert!(notify.is_empty(), "notify depends on {notify:?}");
    let text = of("text");
    assert!(text.is_empty(), "text depends on {text:?}");
}
