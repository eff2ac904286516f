//! Property-based fuzzing of the request parsers: arbitrary bytes and arbitrary JSON never panic, and every refusal
//! is a client error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{Map, Value};
use switchyard::classify::Classifier;
use switchyard::request::{Endpoint, PrepareContext, parse_object, prepare_native};
use switchyard::translate::{
    OpenAiContext, OpenAiKind, SseEvents, SseTranslator, chat_request, completion_request, embeddings_request,
};
use switchyard_core::config::RoutingConfig;
use switchyard_core::ollama::LoadOptions;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z:./0-9 ]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool"),
            Just("auto"),
            Just("llama3.2:3b"),
            Just("5m"),
            Just("-1")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_string()),
                    Just("messages".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("options".to_string()),
                    Just("prompt".to_string()),
                    Just("input".to_string()),
                    Just("stream".to_string()),
                    Just("keep_alive".to_string()),
                    Just("tools".to_string()),
                    Just("format".to_string()),
                    Just("images".to_string()),
                    Just("temperature".to_string()),
                    Just("num_predict".to_string()),
                    Just("max_tokens".to_string()),
                    Just("stop".to_string()),
                    Just("tool_calls".to_string()),
                    Just("function".to_string()),
                    Just("arguments".to_string()),
                    Just("response_format".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    json_value().prop_map(|v| match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("model".into(), Value::from("llama3.2:3b"));
            m.insert("messages".into(), Value::Array(vec![other]));
            m
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_object(&bytes, 64) {
            prop_assert!(e.status().is_client_error());
        }
        let mut t = SseTranslator::new(OpenAiContext { kind: OpenAiKind::Chat, id: "x".into(), created: 0, include_usage: true }, "m");
        let mut out = BytesMut::new();
        t.line(&bytes, &mut out);
    }

    #[test]
    fn arbitrary_json_never_panics_and_refusals_are_client_errors(body in object()) {
        let classifier = Classifier::new();
        let routing = RoutingConfig::default();
        let cx = PrepareContext { routing: &routing, classifier: &classifier, quality_header: None };
        for endpoint in [Endpoint::Chat, Endpoint::Generate, Endpoint::Embed, Endpoint::Embeddings] {
            match prepare_native(endpoint, body.clone(), cx) {
                Ok(prepared) => {
                    // Whatever was accepted can be serialised for the upstream.
                    let load = LoadOptions { num_ctx: Some(4096), num_gpu: Some(20) };
                    prop_assert!(prepared.upstream_body("m:latest", &load).is_ok());
                }
                Err(e) => prop_assert!(e.status().is_client_error(), "{e}"),
            }
        }
        for result in [chat_request(&body).map(|_| ()), completion_request(&body).map(|_| ()), embeddings_request(&body).map(|_| ())] {
            if let Err(e) = result {
                prop_assert!(e.status().is_client_error(), "{e}");
            }
        }
        let text = Value::Object(body.clone()).to_string();
        let mut t = SseTranslator::new(OpenAiContext { kind: OpenAiKind::Completion, id: "x".into(), created: 0, include_usage: false }, "m");
        let mut out = BytesMut::new();
        t.line(text.as_bytes(), &mut out);
    }
}
