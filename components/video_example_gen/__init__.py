"""VideoExampleGen: a FileBasedExampleGen whose Beam source reads raw video files."""
from components.video_example_gen.component import VideoExampleGen

__all__ = ['VideoExampleGen']
