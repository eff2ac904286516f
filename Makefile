# Two commands: `make demo` runs Switchyard (simulator + router, no GPU or Ollama needed), `make test` runs every
# test after setting up what a fresh machine lacks.
.PHONY: demo test bench

demo:
	cargo run --release -p switchyard -- demo

test:
	scripts/test.sh

bench:
	scripts/bench.sh
