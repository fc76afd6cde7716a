"""`traffic-center demo`: a Traffic Center and two reference LAS processes doing real transfers."""
