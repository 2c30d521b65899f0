//! Link keeping at full scale: the real refresh rule over 1,000,000 links for 90 simulated days
//! (2% transient failures, a 6-hour outage on day 29, 0.1% of users revoking, 0.1% new links and
//! 0.1% disconnects a day) with the usage mix (10% used daily, 3% weekly, 7% monthly, 20%
//! once, the rest never), then with 5% used daily, then with nobody using any link.
//!
//!     cargo run --release -p keaplink-core --example keepalive_sim [LINKS] [DAYS]

use keaplink_core::sim::{describe, run, Mix, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let links: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let days: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(90);
    let started = std::time::Instant::now();
    let runs = [
        ("10% used daily (the issue's mix)", 0.10, true),
        ("5% used daily", 0.05, true),
        ("nobody uses any link (keep-alive alone)", 0.0, false),
    ];
    for (name, daily, used) in runs {
        let mut cfg = SimConfig::scenario(links, days);
        cfg.mix.daily = daily;
        if !used {
            cfg.mix = Mix {
                daily: 0.0,
                weekly: 0.0,
                monthly: 0.0,
                rare: 0.0,
            };
        }
        let r = run(cfg.clone());
        println!("== {name}");
        print!("{}", describe(&cfg, &r));
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}
