//! AirPlay `POST /play` bodies (binary plist or `text/parameters`) through
//! `airplay::video::Video::play`, then the session's clock.
//! Property: an accepted play leaves a finite, non-negative position.
#![no_main]

use std::time::{Duration, SystemTime};

use airtwin_simulators::airplay::video::{Video, VideoReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 3 {
        0 => "text/parameters",
        1 => "application/x-apple-binary-plist",
        _ => "",
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut video = Video::default();
    if let VideoReply::Ok = video.play(body, content_type, 600.0, now) {
        let later = now + Duration::from_millis(1500);
        let position = video.position(later);
        assert!(position.is_finite() && position >= 0.0, "{position}");
        let _ = video.playback_info(later);
        let _ = video.scrub_get(later);
    }
});
