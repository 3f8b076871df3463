//! Documentation generated from the clap [`Cli`](crate::cli::Cli), so it never drifts from the
//! flags the binary really parses: the man page `oms-sync.1` (clap_mangen, plus the EXIT
//! STATUS, ENVIRONMENT and FILES sections clap knows nothing about) and completions for bash,
//! zsh and fish (clap_complete). The Debian package ships what [`write_assets`] writes; the
//! hidden command `oms-sync generate-assets DIR` calls it at package build time.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::{Cli, ExitKind};

/// The command name the assets are generated for (the installed binary's name).
pub const BIN: &str = "oms-sync";

/// Shells a completion script is generated for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("cannot render the man page")]
    Render(#[source] std::io::Error),
    #[error("cannot write {path}: {source}; fix: pass a writable directory")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Files the package installs, for the man page's FILES section.
const FILES: [(&str, &str); 4] = [
    (
        "/etc/oms-sync/oms-sync.toml",
        "configuration read by the packaged systemd units",
    ),
    (
        "/etc/oms-sync/token",
        "the API key (root only, 0600); handed to the services as the systemd credential oms-token",
    ),
    (
        "/var/lib/oms-sync/warehouse.db",
        "the SQLite warehouse (the packaged configuration's warehouse.path)",
    ),
    (
        "/usr/share/doc/oms-sync/README.md",
        "the manual (quick start, queries, configuration, operations); depth in docs/ beside it",
    ),
];

/// The man pages, `(file name, roff source)`: `oms-sync.1` first, then one page per visible
/// command (`oms-sync-status.1`, ...), which the main page's SUBCOMMANDS section refers to.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>, AssetError> {
    // No `help` command page: `oms-sync help X` is `oms-sync X --help`.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let main = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    main.render(&mut out).map_err(AssetError::Render)?;
    extra_sections()
        .to_writer(&mut out)
        .map_err(AssetError::Render)?;
    let mut pages = vec![(main.get_filename(), out)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = clap_mangen::Man::new(sub.clone());
        let mut out = Vec::new();
        page.render(&mut out).map_err(AssetError::Render)?;
        pages.push((page.get_filename(), out));
    }
    Ok(pages)
}

/// What the main page says beyond the flags.
fn extra_sections() -> Roff {
    let mut extra = Roff::new();
    extra.control("SH", ["EXIT STATUS"]);
    // One table of exit codes: the CLI's own.
    for kind in ExitKind::ALL {
        extra
            .control("TP", [])
            .text([bold(kind.code().to_string())])
            .text([roman(kind.meaning())]);
    }
    extra.control("SH", ["ENVIRONMENT"]);
    extra.control("TP", []).text([bold("OMS_SYNC__SECTION__KEY")]).text([roman(
        "overrides the config key section.key, e.g. OMS_SYNC__API__TOKEN; the environment wins over the file",
    )]);
    extra
        .control("TP", [])
        .text([bold("RUST_LOG")])
        .text([roman("log filter; wins over log.level when set")]);
    extra.control("SH", ["FILES"]);
    for (path, what) in FILES {
        extra
            .control("TP", [])
            .text([bold(path)])
            .text([roman(what)]);
    }
    extra
}

/// The completion script for one shell.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut public_command(), BIN, &mut out);
    out
}

/// The `Cli` without its hidden arguments and commands. clap_complete's scripts would offer
/// them (clap_mangen leaves them out), and clap cannot remove a subcommand, so this rebuilds
/// the command from the visible parts; completions need nothing else from it.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new(BIN).version(env!("CARGO_PKG_VERSION"));
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    for arg in full.get_arguments().filter(|a| !a.is_hide_set()) {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The file name a shell's completion script is conventionally installed under
/// (`oms-sync.bash`, `_oms-sync`, `oms-sync.fish`).
pub fn completion_file_name(shell: Shell) -> String {
    shell.file_name(BIN)
}

/// Writes the man pages and the three completion scripts into `dir` (created if missing) and
/// returns the paths written.
pub fn write_assets(dir: &Path) -> Result<Vec<PathBuf>, AssetError> {
    std::fs::create_dir_all(dir).map_err(|source| AssetError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<(PathBuf, Vec<u8>)> = man_pages()?
        .into_iter()
        .map(|(name, roff)| (dir.join(name), roff))
        .collect();
    for shell in SHELLS {
        files.push((dir.join(completion_file_name(shell)), completion(shell)));
    }
    for (path, bytes) in &files {
        std::fs::write(path, bytes).map_err(|source| AssetError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_the_sections_clap_cannot_know() {
        let pages = man_pages().expect("render");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "oms-sync.1",
                "oms-sync-status.1",
                "oms-sync-check.1",
                "oms-sync-demo.1"
            ]
        );
        let page = String::from_utf8(pages[0].1.clone()).expect("utf-8");
        for needle in [
            ".TH oms-sync 1",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "RUST_LOG",
        ] {
            assert!(page.contains(needle), "man page lacks {needle:?}");
        }
        for kind in ExitKind::ALL {
            let code = kind.code();
            assert!(
                page.contains(&format!("\\fB{code}\\fR")),
                "exit code {code}"
            );
        }
    }

    #[test]
    fn completion_file_names_follow_each_shells_convention() {
        let names: Vec<String> = SHELLS.iter().map(|s| completion_file_name(*s)).collect();
        assert_eq!(names, ["oms-sync.bash", "_oms-sync", "oms-sync.fish"]);
    }

    #[test]
    fn unwritable_directory_is_a_typed_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = write_assets(&file).expect_err("a file is not a directory");
        assert!(matches!(err, AssetError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
