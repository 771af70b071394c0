"""w/o video: no video data in finetuning; the video benchmark then tests zero-shot transfer from images."""

from harness.variant import Variant

WO_VIDEO = Variant(
    name="wo_video",
    baseline="lynx",
    axis="data.video",
    description="no video data in finetuning",
    delta={"data.video": False},
)
