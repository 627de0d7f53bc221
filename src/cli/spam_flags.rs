//! spam's single-dash spellings (`-bb 4`, `-pf f.tsv`) accepted beside GNU long options.
//!
//! clap only knows one-letter short flags, so before parsing, each token that is exactly one
//! of spam's spellings for the running subcommand is replaced by its long form.

use std::ffi::OsString;

/// (spam spelling, long option) for every subcommand that mirrors a spam script.
fn table(sub: &str) -> &'static [(&'static str, &'static str)] {
    match sub {
        "reg" => &[
            ("-bb", "--bin-start"),
            ("-be", "--bin-stop"),
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-mf1", "--mask-file1"),
            ("-m", "--margin"),
            ("-mar", "--margin"),
            ("-m3", "--margin3"),
            ("-mar3", "--margin3"),
            ("-rig", "--rigid"),
            ("-ug", "--update-gradient"),
            ("-it", "--max-iterations"),
            ("-dp", "--min-delta-phi"),
            ("-o", "--interpolation-order"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-def", "--save-deformed-image1"),
            ("-np", "--number-of-processes"),
            ("-rmc", "--return-phi-mask-centre"),
            ("-gm", "--gradient-method"),
            ("-gs", "--gaussian-sigma"),
            ("-j", "--journal"),
            ("-shift", "--shift"),
        ],
        "ldic" => &[
            ("-ns", "--node-spacing"),
            ("-ns3", "--node-spacing3"),
            ("-hws", "--half-window-size"),
            ("-hws3", "--half-window-size3"),
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-F", "--apply-f"),
            ("-glt", "--grey-low-threshold"),
            ("-ght", "--grey-high-threshold"),
            ("-mf1", "--mask-file1"),
            ("-mc", "--mask-coverage"),
            ("-m", "--margin"),
            ("-mar", "--margin"),
            ("-m3", "--margin3"),
            ("-mar3", "--margin3"),
            ("-margin", "--margin"),
            ("-margin3", "--margin3"),
            ("-it", "--max-iterations"),
            ("-dp", "--min-delta-phi"),
            ("-o", "--interpolation-order"),
            ("-ug", "--update-gradient"),
            ("-rig", "--rigid"),
            ("-skp", "--skip"),
            ("-sei", "--series-incremental"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-np", "--number-of-processes"),
            ("-shift", "--shift"),
        ],
        "ddic" => &[
            ("-ld", "--label-dilate"),
            ("-vt", "--volume-threshold"),
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-F", "--apply-f"),
            ("-regbb", "--reg-bin-start"),
            ("-regbe", "--reg-bin-stop"),
            ("-m", "--margin"),
            ("-mar", "--margin"),
            ("-margin", "--margin"),
            ("-it", "--max-iterations"),
            ("-lci", "--max-iterations"),
            ("-dp", "--min-delta-phi"),
            ("-lcp", "--min-delta-phi"),
            ("-o", "--interpolation-order"),
            ("-nr", "--non-rigid"),
            ("-ug", "--update-gradient"),
            ("-msb", "--multiscale-binning"),
            ("-dmo", "--dont-mask-others"),
            ("-skp", "--skip"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-vtk", "--vtk-out"),
            ("-np", "--number-of-processes"),
            ("-d", "--debug"),
        ],
        "labels" => &[("-od", "--out-dir"), ("-pre", "--prefix")],
        "pass-phi-field" => &[
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-F", "--apply-f"),
            ("-lab1", "--labelled-file1"),
            ("-ns", "--node-spacing"),
            ("-ns3", "--node-spacing3"),
            ("-im1", "--im1"),
            ("-im1shape", "--im1-shape"),
            ("-regs", "--regs"),
            ("-regsF", "--regs-f"),
            ("-regsb", "--regs-bin-ratio"),
            ("-pf2", "--phi-file2"),
            ("-pf2b", "--phi-file2-bin-ratio"),
            ("-mpl", "--merge-prefer-label"),
            ("-nr", "--neighbourhood-radius"),
            ("-nn", "--number-of-neighbours"),
            ("-cps", "--check-point-surrounded"),
            ("-rst", "--return-status-threshold"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-vtk", "--vtk-out"),
            ("-tif", "--tiff-out"),
            ("-tiff", "--tiff-out"),
            ("-np", "--number-of-processes"),
        ],
        "filter-phi-field" => &[
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-nomask", "--no-mask"),
            ("-nr", "--neighbourhood-radius"),
            ("-nn", "--number-of-neighbours"),
            ("-srs", "--select-return-status"),
            ("-srst", "--srs-threshold"),
            ("-scc", "--select-cc"),
            ("-scct", "--scc-threshold"),
            ("-slqc", "--select-lqc"),
            ("-cint", "--correct-interpolate"),
            ("-clqf", "--correct-lqf"),
            ("-F", "--apply-f"),
            ("-filterF", "--apply-f"),
            ("-fm", "--filter-median"),
            ("-fmr", "--filter-median-radius"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-np", "--number-of-processes"),
        ],
        "regular-strain" => &[
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-comp", "--strain-components"),
            ("-nomaskBad", "--no-mask-bad"),
            ("-rst", "--return-status-threshold"),
            ("-r", "--radius"),
            ("-g", "--geers"),
            ("-cub", "--q8"),
            ("-raw", "--raw"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-vtkln", "--vtk-leave-nans"),
            ("-np", "--number-of-processes"),
        ],
        "deform-image" => &[
            ("-pf", "--phi-file"),
            ("-phiFile", "--phi-file"),
            ("-pfb", "--phi-file-bin-ratio"),
            ("-rr", "--rigid-only"),
            ("-rst", "--return-status-threshold"),
            ("-rad", "--radius"),
            ("-nn", "--number-of-neighbours"),
            ("-disp", "--interpolate-displacements"),
            ("-interpolateDisplacements", "--interpolate-displacements"),
            ("-tet", "--triangulation"),
            ("-triangulation", "--triangulation"),
            ("-mesh-transformation", "--triangulation"),
            ("-a", "--triangulation-alpha-value"),
            ("-triangulation-alpha-value", "--triangulation-alpha-value"),
            ("-cgs", "--correct-grey-for-strain"),
            ("-mf2", "--mask-file2"),
            ("-o", "--interpolation-order"),
            ("-od", "--out-dir"),
            ("-pre", "--prefix"),
            ("-np", "--number-of-processes"),
        ],
        "ereg" => &[("-pf", "--phi-file"), ("-phiFile", "--phi-file"), ("-bin", "--bin"), ("-od", "--out-dir"), ("-pre", "--prefix")],
        "plot" => &[("-od", "--out-dir"), ("-pre", "--prefix")],
        "merge" => &[("-od", "--out-dir"), ("-vtk", "--vtk-out"), ("-notsv", "--no-tsv")],
        _ => &[],
    }
}

/// spam's long spellings (`--apply-F`, `--VTKout`, ...) where they differ from ours, for
/// every subcommand (a spelling whose long option a command lacks is still refused by clap).
const SPAM_LONG: &[(&str, &str)] = &[
    ("--apply-F", "--apply-f"),
    ("--phiFile-bin-ratio", "--phi-file-bin-ratio"),
    ("--maskFile1", "--mask-file1"),
    ("--maskFile2", "--mask-file2"),
    ("--labelledFile1", "--labelled-file1"),
    ("--node-spacing-3", "--node-spacing3"),
    ("--half-window-size-3", "--half-window-size3"),
    ("--VTKout", "--vtk-out"),
    ("--noTSV", "--no-tsv"),
    ("--noTSVout", "--no-tsv"),
    ("--TIFFout", "--tiff-out"),
    ("--TIFout", "--tiff-out"),
    ("-lazy", "--lazy-load"),
];

/// spam's long spellings of one subcommand's own options.
fn long_table(sub: &str) -> &'static [(&'static str, &'static str)] {
    match sub {
        "deform-image" => &[("--radius-limit", "--radius")],
        "filter-phi-field" => &[
            ("--nomask", "--no-mask"),
            ("--neighbourhood-radius-px", "--neighbourhood-radius"),
            ("--select-return-status-threshold", "--srs-threshold"),
            ("--select-cc-threshold", "--scc-threshold"),
            ("--select-local-quadratic-coherency", "--select-lqc"),
            ("--correct-by-interpolation", "--correct-interpolate"),
            ("--correct-by-local-quadratic-fit", "--correct-lqf"),
        ],
        "pass-phi-field" => &[
            ("--image1", "--im1"),
            ("--image1-shape", "--im1-shape"),
            ("--registrationSubtract", "--regs"),
            ("--registrationSubtract-apply-F", "--regs-f"),
            ("--registrationSubtract-bin-ratio", "--regs-bin-ratio"),
            ("--phiFile2", "--phi-file2"),
            ("--phiFile2-bin-ratio", "--phi-file2-bin-ratio"),
            ("--neighbourhood-radius-px", "--neighbourhood-radius"),
        ],
        "pixel-search-propagate" => &[("--starting-point-and-displacement", "--start-point"), ("--CC-threshold", "--cc-threshold")],
        "regular-strain" => &[
            ("--nomaskBad", "--no-mask-bad"),
            ("--neighbourhood-radius-for-strain-calculation", "--radius"),
            ("--no-shape-function", "--raw"),
            ("--VTKleaveNANs", "--vtk-leave-nans"),
        ],
        _ => &[],
    }
}

/// spam flags that only change what spam draws on screen, accepted and dropped: reg's `-g`
/// (matplotlib windows of the iterations; there is no graphical mode here, the iterations are
/// on the progress line). docs/spam-differences.md lists them.
fn cosmetic(sub: &str) -> &'static [&'static str] {
    match sub {
        "reg" => &["-g", "--graph"],
        _ => &[],
    }
}

/// The output-file options of every command that flattens `FieldFiles`.
const FIELD_FILES: &[(&str, &str)] = &[
    ("-vtk", "--vtk-out"),
    ("-tif", "--tiff-out"),
    ("-tiff", "--tiff-out"),
    ("-notsv", "--no-tsv"),
    ("-noTSV", "--no-tsv"),
];

/// The options pixel-search and pixel-search-propagate share (`SearchArgs`).
const SEARCH: &[(&str, &str)] = &[
    ("-sr", "--search-range"),
    ("-mf1", "--mask-file1"),
    ("-mf2", "--mask-file2"),
    ("-mc", "--mask-coverage"),
    ("-glt", "--grey-low-threshold"),
    ("-ght", "--grey-high-threshold"),
    ("-lab1", "--labelled-file1"),
    ("-ld", "--label-dilate"),
    ("-ns", "--node-spacing"),
    ("-ns3", "--node-spacing3"),
    ("-hws", "--half-window-size"),
    ("-hws3", "--half-window-size3"),
    ("-od", "--out-dir"),
    ("-pre", "--prefix"),
    ("-np", "--number-of-processes"),
];

const PIXEL_SEARCH: &[(&str, &str)] = &[
    ("-pf", "--phi-file"),
    ("-phiFile", "--phi-file"),
    ("-pfb", "--phi-file-bin-ratio"),
    ("-F", "--apply-f"),
    ("-lvt", "--label-volume-threshold"),
];

const PROPAGATE: &[(&str, &str)] = &[
    ("-sp", "--start-point"),
    ("-gp", "--guiding-points-file"),
    ("-nr", "--neighbourhood-radius"),
    ("-gwd", "--gaussian-weighting-distance"),
    ("-cct", "--cc-threshold"),
];

/// The spellings of a subcommand: its own table, plus the shared search options.
fn spellings(sub: &str) -> Vec<(&'static str, &'static str)> {
    let own: Vec<(&str, &str)> = match sub {
        "pixel-search" => SEARCH.iter().chain(PIXEL_SEARCH).copied().collect(),
        "pixel-search-propagate" => SEARCH.iter().chain(PROPAGATE).copied().collect(),
        other => table(other).to_vec(),
    };
    let files = matches!(sub, "ldic" | "pixel-search" | "pixel-search-propagate" | "filter-phi-field" | "regular-strain");
    own.into_iter().chain(if files { FIELD_FILES } else { &[] }.iter().copied()).chain(long_table(sub).iter().copied()).chain(SPAM_LONG.iter().copied()).collect()
}

/// Rewrites spam spellings after the subcommand name into long options.
pub fn translate(args: Vec<OsString>) -> Vec<OsString> {
    let sub = args.get(1).and_then(|s| s.to_str()).unwrap_or("").to_string();
    let t = spellings(&sub);
    let dropped = cosmetic(&sub);
    args.into_iter()
        .enumerate()
        .filter(|(i, a)| *i < 2 || !a.to_str().is_some_and(|s| dropped.contains(&s)))
        .map(|(i, a)| {
            if i >= 2 {
                if let Some(s) = a.to_str() {
                    if let Some((_, long)) = t.iter().find(|(short, _)| *short == s) {
                        return OsString::from(*long);
                    }
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_known_flags_of_the_subcommand() {
        let a: Vec<OsString> = ["dvc-stream", "reg", "a.tif", "-bb", "4", "-m", "-1", "--rigid"].iter().map(OsString::from).collect();
        let b: Vec<String> = translate(a).into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(b, ["dvc-stream", "reg", "a.tif", "--bin-start", "4", "--margin", "-1", "--rigid"]);
        // The output-file spellings are shared by the commands that write fields, and only them.
        let t = |args: &[&str]| -> Vec<String> { translate(args.iter().map(OsString::from).collect()).into_iter().map(|s| s.into_string().unwrap()).collect() };
        for sub in ["ldic", "pixel-search", "pixel-search-propagate", "filter-phi-field", "regular-strain"] {
            assert_eq!(t(&["d", sub, "-vtk", "-tiff", "-noTSV"])[2..], ["--vtk-out", "--tiff-out", "--no-tsv"], "{sub}");
        }
        assert_eq!(t(&["d", "pass-phi-field", "-vtk", "-notsv"])[2..], ["--vtk-out", "-notsv"]);
    }
}
