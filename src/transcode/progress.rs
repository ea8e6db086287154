//! ffmpeg's `-progress` output: `key=value` lines, a block ending with
//! `progress=continue` (or `end`) about once a second.

use serde::Serialize;

/// The latest complete progress block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Frames decoded so far (this ffmpeg run).
    pub frame: u64,
    pub fps: f64,
    /// Encoding speed against real time (1.0 = real time).
    pub speed: Option<f64>,
    /// Frames ffmpeg dropped and duplicated (this run).
    pub drop_frames: u64,
    pub dup_frames: u64,
    /// Total output bitrate as ffmpeg reports it.
    pub bitrate_kbps: Option<f64>,
}

/// Accumulates lines; a block is published when its `progress=` line comes.
#[derive(Default)]
pub struct ProgressParser {
    pending: Progress,
}

impl ProgressParser {
    /// Feeds one line; returns the block it completes, if it does.
    pub fn line(&mut self, line: &str) -> Option<Progress> {
        let (k, v) = line.trim().split_once('=')?;
        let v = v.trim();
        let p = &mut self.pending;
        match k {
            "frame" => p.frame = v.parse().unwrap_or(p.frame),
            "fps" => p.fps = v.parse().unwrap_or(p.fps),
            "drop_frames" => p.drop_frames = v.parse().unwrap_or(p.drop_frames),
            "dup_frames" => p.dup_frames = v.parse().unwrap_or(p.dup_frames),
            "speed" => p.speed = v.trim_end_matches('x').trim().parse().ok(),
            "bitrate" => {
                p.bitrate_kbps = v.trim_end_matches("kbits/s").trim().parse().ok();
            }
            "progress" => return Some(p.clone()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_complete_on_progress_lines() {
        let mut p = ProgressParser::default();
        let text = "frame=120\nfps=29.97\nstream_0_0_q=28.0\nbitrate=1234.5kbits/s\n\
                    drop_frames=3\ndup_frames=1\nspeed=1.01x\nprogress=continue\n\
                    frame=150\nspeed=N/A\nbitrate=N/A\nprogress=end\n";
        let blocks: Vec<Progress> = text.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].frame, 120);
        assert_eq!(blocks[0].fps, 29.97);
        assert_eq!(blocks[0].speed, Some(1.01));
        assert_eq!(blocks[0].drop_frames, 3);
        assert_eq!(blocks[0].bitrate_kbps, Some(1234.5));
        assert_eq!(blocks[1].frame, 150);
        assert_eq!(blocks[1].speed, None);
        assert_eq!(p.line("garbage"), None);
    }
}
