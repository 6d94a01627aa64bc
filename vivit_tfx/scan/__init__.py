"""`vivit-tfx scan`: score an archive of videos on Apache Beam, resumably, with a drift check."""
