"""Scale-out on engines users already run: Ray Data for the teacher's pass over a large corpus."""
