//! A seeded request trace: models drawn from a Zipf distribution over a popularity order, Poisson arrivals, and a
//! mix of short and long prompts and answers. The same seed gives the same trace, so every scenario of a replay
//! sees exactly the same requests.

use serde::Serialize;

/// SplitMix64: small, fast, and good enough to draw a benchmark trace; no dependency, stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// Exponential with the given mean (the gap between Poisson arrivals).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Zipf weights of ranks 1..=n with exponent `s`, normalised to sum to 1.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    let raw: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let sum: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / sum).collect()
}

/// What a trace request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Chat,
    Embed,
}

/// One request of the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRequest {
    /// Arrival, in simulated seconds from the start.
    pub at: f64,
    pub model: String,
    pub kind: Kind,
    /// Words in the prompt.
    pub prompt_words: usize,
    /// `num_predict` of a chat request.
    pub num_predict: u64,
}

/// How to draw a trace.
#[derive(Debug, Clone)]
pub struct TraceSpec {
    pub seed: u64,
    pub requests: usize,
    /// Chat models, most popular first.
    pub models: Vec<String>,
    /// Zipf exponent over `models`.
    pub zipf_s: f64,
    /// Mean simulated seconds between arrivals.
    pub mean_gap: f64,
    /// An embedding model and the share of requests that go to it.
    pub embedding: Option<(String, f64)>,
}

/// Draws the trace.
pub fn generate(spec: &TraceSpec) -> Vec<TraceRequest> {
    let mut rng = Rng::new(spec.seed);
    let weights = zipf_weights(spec.models.len(), spec.zipf_s);
    let mut at = 0.0;
    let mut trace = Vec::with_capacity(spec.requests);
    for _ in 0..spec.requests {
        at += rng.exponential(spec.mean_gap);
        if let Some((model, share)) = &spec.embedding
            && rng.unit() < *share
        {
            let prompt_words = rng.range(20, 300) as usize;
            trace.push(TraceRequest { at, model: model.clone(), kind: Kind::Embed, prompt_words, num_predict: 0 });
            continue;
        }
        let mut pick = rng.unit();
        let mut index = weights.len().saturating_sub(1);
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                index = i;
                break;
            }
            pick -= w;
        }
        let Some(model) = spec.models.get(index) else { break };
        // Prompts: mostly chat-sized, some pasted context, a few long documents (within a 4096-token context).
        let prompt_words = match rng.unit() {
            u if u < 0.70 => rng.range(10, 150),
            u if u < 0.95 => rng.range(150, 1000),
            _ => rng.range(1000, 1800),
        } as usize;
        // Answers: short replies, typical explanations, long generations.
        let num_predict = match rng.unit() {
            u if u < 0.30 => rng.range(16, 64),
            u if u < 0.80 => rng.range(64, 300),
            _ => rng.range(300, 800),
        };
        trace.push(TraceRequest { at, model: model.clone(), kind: Kind::Chat, prompt_words, num_predict });
    }
    trace
}

/// A prompt of about `words` words, deterministic from `seed`.
pub fn prompt(words: usize, seed: u64) -> String {
    const VOCABULARY: [&str; 24] = [
        "the",
        "report",
        "shows",
        "that",
        "revenue",
        "in",
        "each",
        "region",
        "grew",
        "while",
        "costs",
        "fell",
        "and",
        "the",
        "audit",
        "found",
        "no",
        "issue",
        "with",
        "supplier",
        "contracts",
        "signed",
        "last",
        "spring",
    ];
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(words * 7 + 64);
    for _ in 0..words {
        let w = VOCABULARY[(rng.next_u64() % VOCABULARY.len() as u64) as usize];
        text.push_str(w);
        text.push(' ');
    }
    text.push_str("\nPlease answer in detail.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TraceSpec {
        TraceSpec {
            seed: 7,
            requests: 20_000,
            models: ["a", "b", "c", "d"].map(String::from).to_vec(),
            zipf_s: 1.1,
            mean_gap: 2.0,
            embedding: Some(("e".to_string(), 0.1)),
        }
    }

    #[test]
    fn same_seed_same_trace() {
        assert_eq!(generate(&spec()), generate(&spec()));
        assert_ne!(generate(&spec()), generate(&TraceSpec { seed: 8, ..spec() }));
    }

    #[test]
    fn popularity_follows_zipf_and_arrivals_the_mean_gap() {
        let trace = generate(&spec());
        let count = |m: &str| trace.iter().filter(|r| r.model == m).count() as f64;
        let chat = trace.len() as f64 - count("e");
        let w = zipf_weights(4, 1.1);
        assert!((count("a") / chat - w[0]).abs() < 0.02, "{} vs {}", count("a") / chat, w[0]);
        assert!(count("a") > count("b") && count("b") > count("c") && count("c") > count("d"));
        assert!((count("e") / trace.len() as f64 - 0.1).abs() < 0.02);
        let mean_gap = trace.last().unwrap().at / trace.len() as f64;
        assert!((mean_gap - 2.0).abs() < 0.1, "{mean_gap}");
        assert!(trace.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn prompts_have_the_asked_length() {
        assert_eq!(prompt(50, 1).split_whitespace().count(), 54);
    }
}
