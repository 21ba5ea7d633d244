//! Prints the chart test's verdict and features for each image named on the command line:
//! `cargo run -p hlbot-llm --example chart_look -- a.png b.jpg`.

fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::read(&path)
            .ok()
            .and_then(|b| hlbot_llm::chart_look_bytes(&b))
        {
            Some(l) => println!(
                "{:5} {:11} bg {:.2} bars {}/{} lines {} series {:.2}  {path}\n      {}",
                l.is_chart,
                l.kind,
                l.features.background,
                l.features.warm_bars,
                l.features.cool_bars,
                l.features.long_lines,
                l.features.series_span,
                l.why
            ),
            None => println!("cannot decode {path}"),
        }
    }
}
