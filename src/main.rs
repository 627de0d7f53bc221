//! The `dvc-stream` binary: all the work is in the library; see `cli`.

fn main() {
    dvc_stream::init_process();
    std::process::exit(dvc_stream::cli::run(std::env::args_os().collect()));
}
