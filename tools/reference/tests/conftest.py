import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tools/reference
sys.path.insert(0, HERE)                   # tools/reference/tests
