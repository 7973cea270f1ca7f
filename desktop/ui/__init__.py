"""The Qt side of jwt-desktop: widgets, and the controller that runs the core off the GUI thread.

Importing this package imports nothing: start-up time matters, so each module is imported
where it is needed.
"""
