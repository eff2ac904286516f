//! Tuning presets, embedded from `profiles/*.toml` so the binary carries them.

/// Every preset: name and TOML text.
pub const PRESETS: [(&str, &str); 7] = [
    ("balanced", include_str!("../../../../profiles/balanced.toml")),
    ("low-latency", include_str!("../../../../profiles/low-latency.toml")),
    ("high-throughput", include_str!("../../../../profiles/high-throughput.toml")),
    ("high-quality", include_str!("../../../../profiles/high-quality.toml")),
    ("gpu-8gb", include_str!("../../../../profiles/gpu-8gb.toml")),
    ("gpu-24gb", include_str!("../../../../profiles/gpu-24gb.toml")),
    ("gpu-80gb", include_str!("../../../../profiles/gpu-80gb.toml")),
];

/// The TOML text of preset `name`.
pub fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}
