"""Offline preprocessing: face detection and cropping, audio extraction, and turning official dataset releases into
maedfer annotation files. Nothing in the library imports these modules."""
