//! Measures taking and releasing a GPU lease (docs/PERFORMANCE.md § GPU
//! leases): `Leases::take` of 1 and 2 of 4 free fake GPUs, then dropping the
//! lease, next to the direct alternative, one bare `flock` on one file
//! (open, lock, close). Interleaved, medians. Run it with
//! `cargo run -q -p stepbox-bench --bin gpu_lease --release`.

use std::fs::OpenOptions;
use std::time::{Duration, Instant};

use clap::Parser;
use stepbox::gpus::{GpuRequest, Holder, Inventory, Leases};

/// Benchmark GPU leases against a bare flock.
#[derive(Parser)]
struct Args {
    /// Rounds of each kind
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let gpus: Vec<String> = (0..4)
        .map(|index| {
            format!(
                r#"{{"index": {index}, "uuid": "GPU-{index:04}", "model": "NVIDIA H200", "memory_bytes": 1, "device": "/dev/nvidia{index}"}}"#
            )
        })
        .collect();
    let inventory =
        Inventory::from_json(&format!(r#"{{"gpus": [{}]}}"#, gpus.join(",")), "bench").map_err(anyhow::Error::msg)?;
    let leases = Leases::new(dir.path().join("gpus"));
    let holder = Holder::this_process("bench", "bench-1");
    let (mut one, mut two, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let bare_path = dir.path().join("bare.lock");
    for _ in 0..args.iterations {
        for (count, samples) in [(1, &mut one), (2, &mut two)] {
            let request = GpuRequest { count, class: None };
            let started = Instant::now();
            let lease = leases.take(&inventory, &request, &holder, None, |_| {}).await?;
            drop(lease);
            samples.push(started.elapsed());
        }
        let started = Instant::now();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&bare_path)?;
        file.lock()?;
        drop(file);
        bare.push(started.elapsed());
    }
    let (one, two, bare) = (median(one), median(two), median(bare));
    let ratio = |value: Duration| value.as_secs_f64() / bare.as_secs_f64();
    println!("{:<44} {:>10}", "what (medians)", "time");
    println!("{:<44} {:>8.1} µs", "bare flock on one file (open, lock, close)", bare.as_secs_f64() * 1e6);
    println!("{:<44} {:>8.1} µs  {:.1}x", "lease 1 of 4 GPUs, then release", one.as_secs_f64() * 1e6, ratio(one));
    println!("{:<44} {:>8.1} µs  {:.1}x", "lease 2 of 4 GPUs, then release", two.as_secs_f64() * 1e6, ratio(two));
    Ok(())
}
