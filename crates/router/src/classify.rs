//! Request classification for `model: "auto"`. The learned classifier and the request types live in the
//! `switchyard-classifier` crate and are re-exported here; this module adds the optional embedding classifier.
//!
//! Nearest-neighbour classification through an Ollama embedding model:
//!
//! At start the labelled examples are embedded once (`POST /api/embed` with an array `input`) and kept as unit
//! vectors. A request is embedded the same way and classified by a similarity-weighted vote of its `K` nearest
//! examples. Any failure (upstream error, timeout, odd answer) and any request that resembles no example closely
//! enough falls back to the learned [`Classifier`], so routing never waits on or fails because of this classifier.

pub use switchyard_classifier::{
    Classification, Classifier, ClassifyInput, Needs, Role, RuleClassifier, Turn, expected_output_tokens,
};

use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_core::http::{HttpClient, join_url};
use switchyard_core::{Category, CoreError};
use thiserror::Error;

/// Number of nearest examples that vote.
const K: usize = 5;
/// Default similarity the nearest example must reach for the vote to count.
const DEFAULT_MIN_SIMILARITY: f32 = 0.45;
/// Default time allowed to embed one request.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed to embed one batch of examples (the model may have to load first).
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Examples embedded per request while building.
const BATCH: usize = 64;
/// Bytes of the request's text that are embedded.
const QUERY_BYTES: usize = 2048;

/// The labelled prompt set shipped with the router, one JSON object per line.
const BUNDLED: &str = include_str!("../data/embedding-examples.jsonl");

/// Errors of the embedding classifier.
#[derive(Debug, Error)]
pub enum ClassifyError {
    /// The embedding call failed (unreachable, error status, timeout, undecodable answer).
    #[error("embedding with {model} failed: {source}")]
    Embed {
        /// The embedding model asked.
        model: String,
        /// What went wrong on the way.
        #[source]
        source: CoreError,
    },
    /// The model returned a different number of vectors than texts sent.
    #[error("embedding model {model} returned {got} vectors for {expected} texts")]
    CountMismatch {
        /// The embedding model asked.
        model: String,
        /// Texts sent.
        expected: usize,
        /// Vectors received.
        got: usize,
    },
    /// The vectors are unusable: empty, zero, not finite, or of differing dimensions.
    #[error("embedding model {model} returned unusable vectors: {message}")]
    BadVectors {
        /// The embedding model asked.
        model: String,
        /// What is wrong with them.
        message: String,
    },
    /// No labelled examples were given.
    #[error("no labelled examples to embed")]
    NoExamples,
    /// A line of a labelled example file could not be read.
    #[error("labelled examples, line {line}: {message}")]
    BadExample {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Body of `POST /api/embed`.
#[derive(Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
}

/// The part of the `/api/embed` answer used here.
#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

/// A k-nearest-neighbour classifier over embedded labelled examples.
#[derive(Debug, Clone)]
pub struct EmbeddingClassifier {
    /// Shared upstream client.
    http: HttpClient,
    /// Full URL of the embed endpoint.
    url: String,
    /// Embedding model name, as Ollama knows it.
    model: String,
    /// Category of each example, in the order of `vectors`.
    labels: Vec<Category>,
    /// Unit-length example vectors, `dims` floats each, back to back.
    vectors: Vec<f32>,
    /// Dimension of every vector.
    dims: usize,
    /// Similarity the nearest example must reach, else the learned classifier decides.
    min_similarity: f32,
    /// Time allowed to embed one request, else the learned classifier decides.
    query_timeout: Duration,
}

impl EmbeddingClassifier {
    /// Embeds `examples` through `model` at the Ollama server `base_url` and keeps the vectors.
    pub async fn build(
        http: HttpClient,
        base_url: &str,
        model: &str,
        examples: &[(Category, String)],
    ) -> Result<EmbeddingClassifier, ClassifyError> {
        if examples.is_empty() {
            return Err(ClassifyError::NoExamples);
        }
        let url = join_url(base_url, "/api/embed");
        let mut labels = Vec::with_capacity(examples.len());
        let mut vectors = Vec::new();
        let mut dims = 0;
        for chunk in examples.chunks(BATCH) {
            let texts: Vec<&str> = chunk.iter().map(|(_, text)| text.as_str()).collect();
            let embedded = embed(&http, &url, model, &texts, BUILD_TIMEOUT).await?;
            for ((category, _), mut vector) in chunk.iter().zip(embedded) {
                if dims == 0 {
                    dims = vector.len();
                }
                if vector.len() != dims {
                    return Err(bad_vectors(model, format!("dimension {} after {dims}", vector.len())));
                }
                if !normalize(&mut vector) {
                    return Err(bad_vectors(model, "a zero or non-finite vector".to_string()));
                }
                labels.push(*category);
                vectors.extend_from_slice(&vector);
            }
        }
        Ok(EmbeddingClassifier {
            http,
            url,
            model: model.to_string(),
            labels,
            vectors,
            dims,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        })
    }

    /// Number of embedded examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when no example is held (never the case for a built classifier).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Dimension of the embedding vectors.
    pub fn dimensions(&self) -> usize {
        self.dims
    }

    /// Classifies by the nearest examples; falls back to `fallback` on any error or when nothing is close enough.
    pub async fn classify(&self, input: &ClassifyInput<'_>, fallback: &Classifier) -> Classification {
        let fallback = fallback.classify(input);
        let Some(query) = query_text(input) else { return fallback };
        let mut vector = match embed(&self.http, &self.url, &self.model, &[query], self.query_timeout).await {
            Ok(mut vectors) => vectors.pop().unwrap_or_default(),
            Err(error) => {
                tracing::debug!(%error, "embedding failed; classifying with the fallback");
                return fallback;
            }
        };
        if vector.len() != self.dims || !normalize(&mut vector) {
            tracing::debug!(model = %self.model, "embedding answer unusable; classifying with the fallback");
            return fallback;
        }
        match self.vote(&vector) {
            Some((category, scores)) => Classification {
                category,
                confidence: scores[category.index()],
                needs: Needs::of(input, category),
                scores,
            },
            None => fallback,
        }
    }

    /// Similarity-weighted vote of the `K` nearest examples; `None` when the nearest is not close enough.
    fn vote(&self, query: &[f32]) -> Option<(Category, [f32; 7])> {
        let mut nearest: [(f32, usize); K] = [(f32::NEG_INFINITY, usize::MAX); K];
        for (i, example) in self.vectors.chunks_exact(self.dims).enumerate() {
            let similarity: f32 = example.iter().zip(query).map(|(a, b)| a * b).sum();
            if similarity > nearest[K - 1].0 {
                let at = nearest.iter().position(|(s, _)| similarity > *s).unwrap_or(K - 1);
                nearest.copy_within(at..K - 1, at + 1);
                nearest[at] = (similarity, i);
            }
        }
        if nearest[0].0 < self.min_similarity {
            return None;
        }
        let mut scores = [0.0f32; 7];
        for (similarity, i) in nearest {
            if let Some(category) = self.labels.get(i) {
                scores[category.index()] += similarity.max(0.0);
            }
        }
        let total: f32 = scores.iter().sum();
        if total <= 0.0 {
            return None;
        }
        for s in &mut scores {
            *s /= total;
        }
        let best = switchyard_classifier::model::argmax(&scores);
        Some((Category::ALL[best], scores))
    }
}

/// The text embedded for a request: its last user turn (or last turn), cut to `QUERY_BYTES`.
fn query_text<'a>(input: &ClassifyInput<'a>) -> Option<&'a str> {
    let turn = input.turns.iter().rev().find(|t| t.role == Role::User).or(input.turns.last())?;
    let text = turn.text.trim();
    if text.is_empty() {
        return None;
    }
    let mut end = text.len().min(QUERY_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

/// One `POST /api/embed` call for `texts`.
pub(crate) async fn embed(
    http: &HttpClient,
    url: &str,
    model: &str,
    texts: &[&str],
    timeout: Duration,
) -> Result<Vec<Vec<f32>>, ClassifyError> {
    let body = EmbedRequest { model, input: texts };
    let response: EmbedResponse = http
        .post_json(url, &body, timeout)
        .await
        .map_err(|source| ClassifyError::Embed { model: model.to_string(), source })?;
    if response.embeddings.len() != texts.len() {
        return Err(ClassifyError::CountMismatch {
            model: model.to_string(),
            expected: texts.len(),
            got: response.embeddings.len(),
        });
    }
    Ok(response.embeddings)
}

fn bad_vectors(model: &str, message: String) -> ClassifyError {
    ClassifyError::BadVectors { model: model.to_string(), message }
}

/// Scales `v` to unit length; false when it is empty, zero or not finite.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return false;
    }
    for x in v.iter_mut() {
        *x /= norm;
    }
    true
}

/// One line of a labelled example file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleLine {
    category: Category,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    turns: Option<Vec<ExampleTurn>>,
}

/// One turn of a multi-turn example.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleTurn {
    role: Role,
    text: String,
}

/// Reads labelled examples in the classifier's JSONL format: `{"category":..,"prompt":..}` or
/// `{"category":..,"turns":[{"role":..,"text":..}]}` per line, blank lines ignored. A multi-turn example
/// contributes its last user turn, the text a request is embedded by.
pub fn parse_examples(jsonl: &str) -> Result<Vec<(Category, String)>, ClassifyError> {
    let mut examples = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| ClassifyError::BadExample { line: i + 1, message };
        let parsed: ExampleLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let text = match (parsed.prompt, parsed.turns) {
            (Some(prompt), None) => prompt,
            (None, Some(turns)) => turns
                .into_iter()
                .rev()
                .find(|t| t.role == Role::User)
                .map(|t| t.text)
                .ok_or_else(|| bad("no user turn".to_string()))?,
            _ => return Err(bad("exactly one of `prompt` and `turns` is required".to_string())),
        };
        examples.push((parsed.category, text));
    }
    Ok(examples)
}

/// The labelled examples shipped with the router (`data/embedding-examples.jsonl`, a sample of the classifier's
/// training corpus written by `scripts/train-classifier.sh`).
pub fn bundled_examples() -> Result<Vec<(Category, String)>, ClassifyError> {
    parse_examples(BUNDLED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Turn;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};
    use tokio::task::JoinHandle;

    /// Bag-of-words hashed embedding: texts sharing words are close.
    fn bag_of_words(text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; 256];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let h = switchyard_core::text::stable_hash(word.to_lowercase().as_bytes());
            v[(h % 256) as usize] += 1.0;
        }
        v
    }

    /// Answers like `/api/embed`; texts containing "FAIL" get a 500, and model "short" drops one vector.
    async fn embed_handler(Json(body): Json<Value>) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
        let texts: Vec<String> = match &body["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => return Err((axum::http::StatusCode::BAD_REQUEST, "bad input".into())),
        };
        if texts.iter().any(|t| t.contains("FAIL")) {
            return Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"boom"}"#.into()));
        }
        let mut embeddings: Vec<Vec<f32>> = texts.iter().map(|t| bag_of_words(t)).collect();
        if body["model"] == "short" {
            embeddings.pop();
        }
        Ok(Json(json!({ "model": body["model"], "embeddings": embeddings })))
    }

    async fn mock_ollama() -> (String, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/api/embed", post(embed_handler));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (format!("http://{addr}"), task)
    }

    fn examples() -> Vec<(Category, String)> {
        [
            (Category::Math, "zebra giraffe savanna"),
            (Category::Math, "zebra giraffe herd"),
            (Category::Math, "giraffe savanna sunset"),
            (Category::Creative, "violin cello orchestra"),
            (Category::Creative, "cello orchestra concert"),
            (Category::Factual, "glacier fjord iceberg"),
        ]
        .into_iter()
        .map(|(c, t)| (c, t.to_string()))
        .collect()
    }

    fn input<'a>(turns: &'a [Turn<'a>]) -> ClassifyInput<'a> {
        ClassifyInput::text(turns)
    }

    #[tokio::test]
    async fn nearest_examples_decide_when_close_enough() {
        let (url, server) = mock_ollama().await;
        let knn = EmbeddingClassifier::build(HttpClient::default(), &url, "bow", &examples()).await.unwrap();
        assert_eq!(knn.len(), 6);
        assert_eq!(knn.dimensions(), 256);
        let fallback = Classifier::new();

        // The learned classifier knows nothing of zebras; the examples do.
        let turns = [Turn { role: Role::User, text: "zebra giraffe", images: 0 }];
        let c = knn.classify(&input(&turns), &fallback).await;
        assert_eq!(c.category, Category::Math);
        assert!(c.confidence > 0.5 && c.confidence <= 1.0);
        assert!((c.scores.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert_eq!(fallback.classify(&input(&turns)).category, Category::General);

        // Only the last user turn is embedded.
        let turns = [
            Turn { role: Role::User, text: "zebra giraffe savanna", images: 0 },
            Turn { role: Role::User, text: "cello orchestra", images: 0 },
        ];
        assert_eq!(knn.classify(&input(&turns), &fallback).await.category, Category::Creative);
        server.abort();
    }

    #[tokio::test]
    async fn falls_back_when_nothing_is_close_or_the_call_fails() {
        let (url, server) = mock_ollama().await;
        let knn = EmbeddingClassifier::build(HttpClient::default(), &url, "bow", &examples()).await.unwrap();
        let fallback = Classifier::new();

        let turns = [Turn { role: Role::User, text: "write a haiku about the rain", images: 0 }];
        let c = knn.classify(&input(&turns), &fallback).await;
        assert_eq!(c, fallback.classify(&input(&turns)));
        assert_eq!(c.category, Category::Creative);

        let turns = [Turn { role: Role::User, text: "zebra giraffe FAIL, what is the capital of Peru?", images: 0 }];
        let c = knn.classify(&input(&turns), &fallback).await;
        assert_eq!(c, fallback.classify(&input(&turns)));
        assert_eq!(c.category, Category::Factual);

        assert_eq!(knn.classify(&input(&[]), &fallback).await.category, Category::General);
        server.abort();
    }

    #[tokio::test]
    async fn build_reports_bad_answers_and_unreachable_servers() {
        let (url, server) = mock_ollama().await;
        let err = EmbeddingClassifier::build(HttpClient::default(), &url, "short", &examples()).await.unwrap_err();
        assert!(matches!(err, ClassifyError::CountMismatch { expected: 6, got: 5, .. }), "{err}");
        let err = EmbeddingClassifier::build(HttpClient::default(), &url, "bow", &[]).await.unwrap_err();
        assert!(matches!(err, ClassifyError::NoExamples));
        let failing = vec![(Category::Math, "FAIL".to_string())];
        let err = EmbeddingClassifier::build(HttpClient::default(), &url, "bow", &failing).await.unwrap_err();
        assert!(matches!(err, ClassifyError::Embed { .. }), "{err}");
        server.abort();

        let err = EmbeddingClassifier::build(HttpClient::default(), "http://127.0.0.1:9", "bow", &examples())
            .await
            .unwrap_err();
        assert!(matches!(&err, ClassifyError::Embed { source, .. } if source.is_connectivity()), "{err}");
    }

    #[tokio::test]
    async fn classifies_through_the_simulators_embedding_model() {
        let sim = switchyard_sim::spawn(switchyard_sim::SimOptions::default()).await.unwrap();
        let examples = bundled_examples().unwrap();
        let model = "nomic-embed-text:latest";
        let knn = EmbeddingClassifier::build(HttpClient::default(), &sim.url(), model, &examples).await.unwrap();
        assert_eq!(knn.len(), examples.len());
        assert_eq!(knn.dimensions(), 768);
        let fallback = Classifier::new();

        let turns = [Turn { role: Role::User, text: "Write a haiku about autumn leaves.", images: 0 }];
        let c = knn.classify(&input(&turns), &fallback).await;
        assert_eq!(c.category, Category::Creative);
        assert!(c.confidence > 0.5);

        // The held-out prompts: nearest examples where one is close, the learned classifier elsewhere.
        let holdout = parse_examples(include_str!("../data/classifier-holdout.jsonl")).unwrap();
        let mut correct = 0;
        for (category, text) in &holdout {
            let turns = [Turn { role: Role::User, text, images: 0 }];
            correct += usize::from(knn.classify(&input(&turns), &fallback).await.category == *category);
        }
        let accuracy = correct as f64 / holdout.len() as f64;
        println!("embedding classifier (simulated nomic-embed-text) on the held-out set: {correct}/{}", holdout.len());
        assert!(accuracy >= 0.75, "{accuracy:.3}");
        sim.shutdown().await;
    }

    #[test]
    fn the_bundled_prompt_set_parses() {
        let examples = bundled_examples().unwrap();
        for category in Category::ALL {
            assert!(examples.iter().filter(|(c, _)| *c == category).count() >= 40, "{category}");
        }
    }

    #[test]
    fn example_lines_are_checked() {
        let ok = "{\"category\":\"math\",\"prompt\":\"2+2\"}\n\n{\"category\":\"general\",\"turns\":[{\"role\":\"user\",\"text\":\"hi\"},{\"role\":\"assistant\",\"text\":\"hello\"}]}\n";
        let parsed = parse_examples(ok).unwrap();
        assert_eq!(parsed, vec![(Category::Math, "2+2".to_string()), (Category::General, "hi".to_string())]);
        let err = parse_examples("{\"category\":\"poetry\",\"prompt\":\"x\"}").unwrap_err();
        assert!(matches!(err, ClassifyError::BadExample { line: 1, .. }));
        let err = parse_examples("{\"category\":\"math\"}").unwrap_err();
        assert!(matches!(err, ClassifyError::BadExample { line: 1, .. }));
    }

    #[test]
    fn queries_are_cut_on_character_boundaries() {
        let long = "é".repeat(QUERY_BYTES);
        let turns = [Turn { role: Role::User, text: &long, images: 0 }];
        let q = query_text(&input(&turns)).unwrap();
        assert!(q.len() <= QUERY_BYTES && !q.is_empty());
    }
}
