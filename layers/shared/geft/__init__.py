"""Code shared by the G-EFT functions; SAM builds this layer into /opt/python.

Modules import nothing heavy at package level so each function pays only for what it uses
(the receiver never imports ``requests``).
"""
