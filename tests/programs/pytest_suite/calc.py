def add(a, b):
    return a + b

def div(a, b):
    return a / b

class Store:
    def __init__(self):
        self.items = []
    def put(self, x):
        self.items.append(x)
    def close(self):
        self.items.clear()
