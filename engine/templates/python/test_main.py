"""Tests of the __GLOAM_NAME__ function: ``.venv/bin/python -m unittest``."""

import unittest

from main import greet


class GreetTest(unittest.TestCase):
    """What __GLOAM_NAME__ answers."""

    def test_greets_the_input_or_the_world(self) -> None:
        """A name is greeted; nothing greets the world."""
        self.assertEqual(greet(b"Ada"), b"Hello, Ada!")
        self.assertEqual(greet(b""), b"Hello, World!")


if __name__ == "__main__":
    unittest.main()
