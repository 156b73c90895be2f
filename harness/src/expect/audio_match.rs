//! "Decoded audio equals this WAV": ALAC and L16 are lossless, so after decryption and decoding
//! the receiver must hold the source PCM sample for sample.
//!
//! Senders add silence around a file: pyatv sends about 1.5 s after it (docs/peers.md), a
//! packetizer pads its last packet, and PulseAudio's sink streams silence before and after what
//! was played. So whole silent frames are trimmed from both ends of both signals before they are
//! compared; everything between the first and the last non-silent frame must be identical.

use std::path::Path;

/// A WAV file's interleaved 16-bit samples.
#[derive(Debug, Clone)]
pub struct Wav {
    pub channels: u16,
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

pub fn read_wav(path: &Path) -> Result<Wav, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(format!(
            "{}: {}-bit {:?}; airtwin compares 16-bit PCM",
            path.display(),
            spec.bits_per_sample,
            spec.sample_format
        ));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Wav {
        channels: spec.channels,
        sample_rate: spec.sample_rate,
        samples,
    })
}

pub fn write_wav(
    path: &Path,
    channels: u16,
    sample_rate: u32,
    samples: &[i16],
) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    for s in samples {
        w.write_sample(*s).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

/// The frames between the first and the last frame with a non-zero sample.
pub fn trim_silence(samples: &[i16], channels: usize) -> &[i16] {
    let channels = channels.max(1);
    let frames = samples.len() / channels;
    let silent = |f: usize| {
        samples[f * channels..(f + 1) * channels]
            .iter()
            .all(|s| *s == 0)
    };
    let Some(first) = (0..frames).find(|f| !silent(*f)) else {
        return &[];
    };
    let last = (0..frames).rev().find(|f| !silent(*f)).unwrap_or(first);
    &samples[first * channels..(last + 1) * channels]
}

/// `Ok` when both signals are equal once edge silence is trimmed; else where they differ.
pub fn compare(source: &[i16], captured: &[i16], channels: usize) -> Result<(), String> {
    let a = trim_silence(source, channels);
    let b = trim_silence(captured, channels);
    if a.is_empty() && b.is_empty() {
        return Ok(());
    }
    let ch = channels.max(1);
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Err(format!(
            "first difference at frame {} (channel {}) of the non-silent part: source {} vs captured {} ({} vs {} frames)",
            i / ch,
            i % ch,
            a[i],
            b[i],
            a.len() / ch,
            b.len() / ch
        ));
    }
    if a.len() != b.len() {
        return Err(format!(
            "non-silent part is {} frames in the source and {} captured (equal up to the shorter)",
            a.len() / ch,
            b.len() / ch
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_silence_is_ignored_but_inner_differences_are_not() {
        let src = [0, 0, 1, 2, 3, 4, 0, 0];
        let cap = [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0];
        assert_eq!(compare(&src, &cap, 2), Ok(()));
        let bad = [0, 0, 1, 2, 3, 5];
        let err = compare(&src, &bad, 2).unwrap_err();
        assert!(err.contains("frame 1 (channel 1)"), "{err}");
        let short = [1, 2];
        assert!(compare(&src, &short, 2)
            .unwrap_err()
            .contains("2 frames in the source and 1"));
    }

    #[test]
    fn inner_silence_is_kept() {
        let src = [1, 1, 0, 0, 2, 2];
        let cap = [1, 1, 2, 2];
        assert!(compare(&src, &cap, 2).is_err());
    }
}
