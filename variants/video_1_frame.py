"""Video with 1 frame: each video is seen through its middle frame only, so motion is invisible."""

from harness.variant import Variant

VIDEO_1_FRAME = Variant(
    name="video_1_frame",
    baseline="lynx",
    axis="data.video",
    description="one frame per video instead of five",
    delta={"data.video_frames": 1},
)
