"""VideoExampleGen: a FileBasedExampleGen whose Beam source reads raw video files."""
from vivit_tfx.components.video_example_gen.component import VideoExampleGen

__all__ = ['VideoExampleGen']
