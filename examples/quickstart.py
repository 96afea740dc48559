"""The seed example: untrusted code, pandas included, in a real sandbox."""
from agentbox import Sandbox

# 自動ルーティングモード (automatic routing)
box = Sandbox()

code = """
import pandas as pd
# 自動的に Tier 2 (MicroVM) が選択されます
df = pd.DataFrame({"A": [1, 2, 3]})
print(df.describe())
"""

result = box.run(code)
print(result.stdout)
print(f"ran in the {result.tier} tier: {result.route_reason}")
