//! Newline-delimited JSON, as Ollama streams it: splitting a byte stream into complete lines.

/// Splits a byte stream into lines; holds only the unfinished last line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Calls `each` for every complete line in `data` (without the newline).
    pub fn push(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(pos);
            if self.partial.is_empty() {
                if !line.is_empty() {
                    each(line);
                }
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                each(&full);
            }
            rest = &after[1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// The unfinished line, if any (a final line without a newline).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut s = LineSplitter::default();
        let mut lines: Vec<String> = Vec::new();
        for chunk in [&b"{\"a\":1}\n{\"b\""[..], b":2}\n", b"\n{\"c\":3}"] {
            s.push(chunk, |l| lines.push(String::from_utf8_lossy(l).into_owned()));
        }
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(s.take_rest().unwrap(), b"{\"c\":3}");
    }
}
