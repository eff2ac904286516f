//! The side-by-side comparison end to end: nginx in front of the simulator and the router beside it, both surfaces,
//! buffered and streamed. Needs nginx (Debian: nginx-light, which the test script installs); without it the test
//! says so and passes, unless `SY_REQUIRE_NGINX` is set.

use std::time::Duration;
use switchyard_bench::nginx;
use switchyard_bench::stack::StackOptions;
use switchyard_bench::versus::{self, Surface, VersusOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_on_both_surfaces_and_nginx_cpu_is_read() {
    let bin = match nginx::locate(None) {
        Ok(bin) => bin,
        Err(e) if std::env::var_os("SY_REQUIRE_NGINX").is_none() => {
            eprintln!("SKIPPED: {e}");
            return;
        }
        Err(e) => panic!("SY_REQUIRE_NGINX is set: {e}"),
    };
    let options = VersusOptions {
        stack: StackOptions {
            time_scale: 0.0,
            num_parallel: 4,
            gpu_vram: "16GiB".to_string(),
            router_bin: None,
            sim_bin: None,
            cache: Default::default(),
        },
        nginx_bin: bin,
        nginx_workers: 1,
        surfaces: vec![Surface::Ollama, Surface::OpenAi],
        concurrencies: vec![2],
        streams: vec![false, true],
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        repeats: 1,
        model: "llama3.2:3b".to_string(),
        num_predict: 8,
    };
    let report = versus::run(&options).await.unwrap();
    assert_eq!(report.cells.len(), 4);
    for cell in &report.cells {
        let names: Vec<&str> = cell.paths.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(names, ["direct", "nginx", "switchyard", "switchyard auto"]);
        for path in &cell.paths {
            assert_eq!(path.errors, 0, "{:?} {} {}", cell.surface, cell.stream, path.path);
            assert!(path.rps.median > 0.0, "{:?} {} {}", cell.surface, cell.stream, path.path);
        }
        // nginx's CPU (master and worker) and the hosted simulator's are read; the router runs in this process here.
        assert!(cell.paths[1].cpu_us.is_some_and(|c| c.median > 0.0));
        assert!(cell.paths[0].cpu_us.is_some_and(|c| c.median > 0.0));
        assert!(cell.router_over_nginx.is_none());
    }
    let text = versus::markdown(&report);
    assert!(text.contains("| /v1/chat/completions | yes | 2 |"), "{text}");
}
