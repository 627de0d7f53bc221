//! Every flag of spam's scripts is accepted by the matching dvc-stream command: this walks
//! spam 0.9.1's own `--help` texts (tests/data/spam-0.9.1/help/help-SCRIPT.txt), takes every
//! spelling of every option (short and long, with as many sample values as its metavariables
//! ask for) and parses a command line with it exactly as `dvc-stream` does (spam's spellings
//! translated, then clap). A spam command line must run after changing only the program name.

use std::ffi::OsString;

use clap::Parser;
use dvc_stream::cli::{spam_flags, Cli};

/// spam's help texts: tests/data/spam-0.9.1/help.
fn help_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam-0.9.1/help")
}

/// The dvc-stream command of a spam script, and the arguments every command line of it needs
/// (positionals, the field to read) so that one more flag can be parsed.
fn command_of(script: &str) -> (&'static str, &'static [&'static str]) {
    match script {
        "reg" => ("reg", &["a.tif", "b.tif"]),
        "ldic" => ("ldic", &["a.tif", "b.tif"]),
        "ddic" => ("ddic", &["a.tif", "lab.tif", "b.tif"]),
        "pixelSearch" => ("pixel-search", &["a.tif", "b.tif"]),
        "pixelSearchPropagate" => ("pixel-search-propagate", &["a.tif", "b.tif"]),
        "deformImage" => ("deform-image", &["a.tif", "-pf", "f.tsv"]),
        "filterPhiField" => ("filter-phi-field", &["-pf", "f.tsv"]),
        "passPhiField" => ("pass-phi-field", &["-pf", "f.tsv"]),
        "regularStrain" => ("regular-strain", &["-pf", "f.tsv"]),
        other => panic!("no dvc-stream command known for spam-{other}"),
    }
}

/// A value spam would accept for a metavariable.
fn sample(metavar: &str) -> &'static str {
    match metavar {
        "APPLY_F" | "FILTER_F" | "REGISTRATION_SUBTRACT_APPLY_F" => "rigid",
        "GRADIENT_METHOD" => "gaussian",
        "COMPONENTS" => "vol",
        "INTERPOLATION_ORDER" => "1",
        "MASK_COVERAGE" | "CC_MIN" | "SCCT" => "0.5",
        m if m.ends_with("BIN_RATIO") || m.starts_with("LABEL_") => "2",
        m if m.contains("FILE") || m.starts_with("MASK") || m.starts_with("LAB") || m == "IM1" || m == "INFILE" => "x.tif",
        "OUT_DIR" => "out",
        "PREFIX" => "p",
        _ => "2",
    }
}

/// One spelling of an option: the flag and the values to give it.
#[derive(Debug)]
struct Spelling {
    flag: String,
    values: Vec<&'static str>,
}

/// The spellings of one option line of argparse's help, e.g.
/// `  -sr A A A A A A, --search-range A A A A A A` or `  -lab1 LAB1 [LAB1 ...], --labelledFile1 LAB1 [LAB1 ...]`.
fn spellings(line: &str) -> Vec<Spelling> {
    // The spellings end where the help text starts (two spaces), or at the end of the line.
    let head = line.trim_start();
    let head = head.split("  ").next().unwrap();
    head.split(", ")
        .map(|part| {
            let mut words = part.split(' ');
            let flag = words.next().unwrap().to_string();
            let mut values = Vec::new();
            for w in words {
                // "X [X ...]": one or more, given once; "[X ...]": zero or more, given once.
                let w = w.trim_start_matches('[').trim_end_matches(']');
                if w == "..." || w.is_empty() || w.ends_with("...") {
                    continue;
                }
                if !values.is_empty() && part.contains(&format!("[{w} ...]")) && part.contains(&format!("{w} [{w}")) {
                    continue;
                }
                values.push(sample(w));
            }
            Spelling { flag, values }
        })
        .collect()
}

/// Every option line of a help text (the lines of the `options:` section that start with a dash).
fn option_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("options:") {
            inside = true;
            continue;
        }
        if inside && line.starts_with("  -") {
            out.push(line);
        }
    }
    out
}

/// Whether `dvc-stream` parses this command line (spam's spellings translated as the binary does).
fn parses(args: &[String]) -> Result<(), String> {
    let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
    Cli::try_parse_from(spam_flags::translate(argv)).map(|_| ()).map_err(|e| e.render().to_string().lines().next().unwrap_or_default().to_string())
}

#[test]
fn every_flag_of_spams_help_texts_is_accepted() {
    let dir = help_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 9, "spam's nine scripts with a dvc-stream command");
    let mut refused = Vec::new();
    let mut checked = 0;
    for file in &files {
        let script = file.file_stem().unwrap().to_str().unwrap().trim_start_matches("help-").to_string();
        let (cmd, base) = command_of(&script);
        let text = std::fs::read_to_string(file).unwrap();
        let lines = option_lines(&text);
        assert!(lines.len() > 5, "{}: no options found", file.display());
        for line in lines {
            let all = spellings(line);
            // The base's own -pf is left out when the option tested is -pf itself.
            let is_pf = all.iter().any(|s| s.flag == "-pf");
            for sp in &all {
                if sp.flag == "-h" || sp.flag == "--help" {
                    continue;
                }
                let mut args: Vec<String> = vec!["dvc-stream".into(), cmd.into()];
                let mut b = base.iter();
                while let Some(a) = b.next() {
                    if is_pf && *a == "-pf" {
                        b.next();
                        continue;
                    }
                    args.push(a.to_string());
                }
                args.push(sp.flag.clone());
                args.extend(sp.values.iter().map(|v| v.to_string()));
                checked += 1;
                if let Err(e) = parses(&args) {
                    refused.push(format!("spam-{script} {} {}: {e}", sp.flag, sp.values.join(" ")));
                }
            }
        }
    }
    assert!(checked > 200, "{checked} spellings checked");
    assert!(refused.is_empty(), "{} spam spellings refused:\n{}", refused.len(), refused.join("\n"));
}

/// The walk itself can fail: an unknown flag is refused, and a flag given the wrong number of
/// values is refused.
#[test]
fn the_walk_catches_a_refused_flag() {
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(parses(&args(&["dvc-stream", "pixel-search", "a.tif", "b.tif", "-sr", "2", "2", "2", "2", "2", "2"])).is_ok());
    assert!(parses(&args(&["dvc-stream", "pixel-search", "a.tif", "b.tif", "-notAFlag"])).is_err());
    let line = "  -sr SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE, --search-range SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE SEARCH_RANGE";
    let s = spellings(line);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].flag.as_str(), s[0].values.len()), ("-sr", 6));
    assert_eq!((s[1].flag.as_str(), s[1].values.len()), ("--search-range", 6));
    let s = spellings("  -lab1 LAB1 [LAB1 ...], --labelledFile1 LAB1 [LAB1 ...]");
    assert_eq!(s[1].values, ["x.tif"]);
    let s = spellings("  -comp [COMPONENTS ...], --strain-components [COMPONENTS ...]");
    assert_eq!(s[0].values, ["vol"]);
    let s = spellings("  -g, --geers           Use Geers interpolation? Smoother strain");
    assert_eq!(s.iter().map(|s| s.flag.as_str()).collect::<Vec<_>>(), ["-g", "--geers"]);
    assert!(s.iter().all(|s| s.values.is_empty()));
}
