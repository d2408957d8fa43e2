//! `holt-fs man` and `holt-fs completions`: manual pages and shell
//! completions rendered from the clap definitions at run time, so they can
//! never disagree with the binary that prints them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

use crate::mount_helper::HelperArgs;

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Print this verb's page (holt-fs-VERB.1; mount.holt-fs for the
    /// mount(8) helper's) instead of holt-fs.1.
    #[arg(value_name = "VERB", conflicts_with = "out_dir")]
    verb: Option<String>,
    /// Write every page into the man directory DIR (such as
    /// /usr/local/share/man): holt-fs.1 and one holt-fs-VERB.1 per verb
    /// into DIR/man1, mount.holt-fs.8 into DIR/man8.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// The name under which `man` offers the helper's page.
const HELPER_PAGE: &str = "mount.holt-fs";

/// Print one page, or write all pages into `--out-dir`.
pub fn man(args: ManArgs, cli: clap::Command) -> Result<(), String> {
    if let Some(dir) = args.out_dir {
        return write_pages(&dir, cli).map_err(|e| format!("cannot write man pages into {}: {e}", dir.display()));
    }
    let page = page(cli, args.verb.as_deref())?;
    let mut out = std::io::stdout().lock();
    page.render(&mut out).and_then(|()| out.flush()).map_err(|e| format!("cannot print: {e}"))
}

/// The page of `verb` (holt-fs.1 for none), named as `--out-dir` names it.
fn page(cli: clap::Command, verb: Option<&str>) -> Result<Man, String> {
    // Built as clap_mangen::generate_to builds it, so a verb's page is
    // titled holt-fs-VERB and `help` is no verb.
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    match verb {
        None => Ok(Man::new(cli)),
        Some(HELPER_PAGE) => Ok(Man::new(HelperArgs::command()).section("8")),
        Some(verb) => match cli.find_subcommand(verb) {
            Some(sub) => Ok(Man::new(sub.clone())),
            None => Err(format!("no verb '{verb}' (verbs: {}, or {HELPER_PAGE})", verb_names(&cli).join(", "))),
        },
    }
}

fn verb_names(cli: &clap::Command) -> Vec<&str> {
    cli.get_subcommands().map(|s| s.get_name()).collect()
}

/// man(1) finds a section-N page only under manN/, so each page goes
/// into the directory of its section.
fn write_pages(dir: &Path, cli: clap::Command) -> std::io::Result<()> {
    let (man1, man8) = (dir.join("man1"), dir.join("man8"));
    std::fs::create_dir_all(&man1)?;
    std::fs::create_dir_all(&man8)?;
    clap_mangen::generate_to(cli, &man1)?;
    Man::new(HelperArgs::command()).section("8").generate_to(&man8)?;
    Ok(())
}

/// Print the completion script for one shell.
pub fn completions(args: CompletionsArgs, cli: clap::Command) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(&script(args.shell, cli)).and_then(|()| out.flush()).map_err(|e| format!("cannot print: {e}"))
}

const BIN_NAME: &str = "holt-fs";

fn script(shell: Shell, mut cli: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cli, BIN_NAME, &mut out);
    if shell != Shell::Bash {
        return out;
    }
    // clap_complete's bash script spells a verb's state `holt__fs__subcmd__V`
    // where it tracks the words typed, but labels the verb's case arm
    // `holt__subcmd__fs__subcmd__V` (the '-' of a bin name escaped twice),
    // so no verb's options would ever complete. Spell the arms as the
    // tracking does (clap-rs/clap issue 6421).
    let text = String::from_utf8(out).expect("clap_complete writes UTF-8");
    text.replace("holt__subcmd__fs__", "holt__fs__").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;

    fn render(man: Man) -> String {
        let mut out = Vec::new();
        man.render(&mut out).expect("render into memory");
        String::from_utf8(out).expect("roff is UTF-8")
    }

    #[test]
    fn man_page_mentions_every_verb() {
        let page = render(page(Cli::command(), None).unwrap());
        let cli = Cli::command();
        assert!(verb_names(&cli).len() >= 7, "mount, bench, umount, fsck, info, man, completions at least");
        for verb in verb_names(&cli) {
            assert!(page.contains(&format!("holt\\-fs\\-{}(1)", verb.replace('-', "\\-"))), "{verb} missing:\n{page}");
        }
    }

    #[test]
    fn verb_pages_carry_their_options_and_unknown_verbs_are_named() {
        let mount = render(page(Cli::command(), Some("mount")).unwrap());
        assert!(mount.contains(".TH holt-fs-mount 1") && mount.contains("\\-\\-store"), "{mount}");
        let helper = render(page(Cli::command(), Some(HELPER_PAGE)).unwrap());
        assert!(helper.contains(".TH mount.holt-fs 8") && helper.contains("nofail"), "{helper}");
        let err = page(Cli::command(), Some("mnt")).err().expect("no such verb");
        assert!(err.contains("'mnt'") && err.contains("umount"), "{err}");
    }

    #[test]
    fn out_dir_gets_a_page_per_verb_and_the_helper_page() {
        let dir = tempfile::tempdir().unwrap();
        man(ManArgs { verb: None, out_dir: Some(dir.path().to_path_buf()) }, Cli::command()).unwrap();
        let cli = Cli::command();
        let mut want: Vec<String> = verb_names(&cli).iter().map(|v| format!("man1/holt-fs-{v}.1")).collect();
        want.extend(["man1/holt-fs.1".to_string(), format!("man8/{HELPER_PAGE}.8")]);
        for name in want {
            assert!(dir.path().join(&name).is_file(), "{name} not written");
        }
    }

    #[test]
    fn completions_name_the_verbs_for_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(script(shell, Cli::command())).unwrap();
            assert!(script.contains("holt-fs") && script.contains("umount") && script.contains("store"), "{shell}");
        }
    }

    /// What bash offers for `holt-fs WORDS...` with the cursor on the last word.
    fn bash_complete(words: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holt-fs.bash");
        std::fs::write(&file, script(Shell::Bash, Cli::command())).unwrap();
        let (cur, prev) = (words[words.len() - 1], words[words.len() - 2]);
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _holt__fs holt-fs '{cur}' '{prev}'; echo \"${{COMPREPLY[*]}}\"",
            file.display(),
            words.join(" "),
            words.len() - 1
        );
        let out = std::process::Command::new("bash").arg("-c").arg(program).output().expect("bash runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    // Regression: with clap_complete's own script, a verb's options never completed.
    #[test]
    fn bash_completes_verbs_and_their_options() {
        assert_eq!(bash_complete(&["holt-fs", "um"]), "umount");
        assert_eq!(bash_complete(&["holt-fs", "mount", "--st"]), "--store");
        assert_eq!(bash_complete(&["holt-fs", "fsck", "--rep"]), "--repair");
    }
}
