"""The seed example: untrusted code, pandas included, in a real sandbox."""
from agentbox import Sandbox

# 自動ルーティングモード (automatic routing): tier="auto", the default. A session
# starts in the nano tier (a forked worker with the standard library only).
box = Sandbox()

code = """
import pandas as pd
# pandas は nano にないため、heavy tier (名前空間・seccomp・Landlock・cgroup
# による jail) に自動的に昇格します
# (pandas is not in nano, so the session is promoted to the heavy tier: a jail of
# namespaces, seccomp, Landlock and cgroups)
df = pd.DataFrame({"A": [1, 2, 3]})
print(df.describe())
"""

result = box.run(code)
print(result.stdout)
print(f"ran in the {result.tier} tier: {result.route_reason}")
box.close()
