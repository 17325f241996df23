-- The sample shop's orders: what the e-commerce bot's actions look up and
-- change (apps/chatbot/shop_actions.c). Fictitious customers, numbers and
-- addresses, made up for the sample (no real data). Loaded into
-- orders.sqlite beside the bot file the first time the bot runs.
CREATE TABLE orders(
  id TEXT PRIMARY KEY,          -- 16-digit order number
  phone TEXT NOT NULL,
  product_zh TEXT NOT NULL,
  product_en TEXT NOT NULL,
  amount REAL NOT NULL,         -- yuan
  ordered TEXT NOT NULL,        -- YYYY-MM-DD
  status TEXT NOT NULL CHECK(status IN ('paid', 'shipped', 'delivered', 'cancelled')),
  carrier TEXT,
  tracking TEXT,
  eta TEXT,                     -- expected delivery, YYYY-MM-DD
  address TEXT NOT NULL
);
CREATE TABLE refunds(
  order_id TEXT PRIMARY KEY REFERENCES orders(id),
  amount REAL NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('reviewing', 'approved', 'paid', 'rejected')),
  updated TEXT NOT NULL
);
CREATE TABLE returns(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL REFERENCES orders(id),
  kind TEXT NOT NULL CHECK(kind IN ('return', 'exchange')),
  item TEXT NOT NULL,
  reason TEXT NOT NULL,
  created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE invoices(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL REFERENCES orders(id),
  title TEXT NOT NULL,
  created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE address_changes(
  order_id TEXT NOT NULL REFERENCES orders(id),
  old TEXT NOT NULL,
  new TEXT NOT NULL,
  created TEXT NOT NULL DEFAULT (datetime('now'))
);
INSERT INTO orders VALUES
  ('2025120300004417', '13800006271', '蓝牙耳机', 'Bluetooth earphones', 199.00, '2025-12-03', 'shipped', '顺丰 SF Express', 'SF1234567890', '2025-12-06', '上海市浦东新区世纪大道100号'),
  ('2025112800007766', '13900003358', '羽绒服', 'down jacket', 599.00, '2025-11-28', 'delivered', '京东物流 JD Logistics', 'JD0098765432', '2025-11-30', '北京市海淀区中关村大街27号'),
  ('2024112356789012', '13700001111', '电饭煲', 'rice cooker', 349.00, '2024-11-23', 'delivered', '中通 ZTO', 'ZT5566778899', '2024-11-26', '广州市天河区天河路385号'),
  ('2025120500001234', '13600002222', '运动鞋', 'running shoes', 429.00, '2025-12-05', 'paid', NULL, NULL, '2025-12-09', '杭州市西湖区文三路90号'),
  ('2025113000005555', '13500003333', '机械键盘', 'mechanical keyboard', 259.00, '2025-11-30', 'delivered', '圆通 YTO', 'YT4433221100', '2025-12-02', '成都市武侯区人民南路四段1号'),
  ('2025112000008888', '13400004444', '保温杯', 'vacuum flask', 89.00, '2025-11-20', 'cancelled', NULL, NULL, NULL, '武汉市洪山区珞喻路129号'),
  ('2025120100003333', '13300005555', '儿童绘本', 'picture books', 128.00, '2025-12-01', 'shipped', '韵达 Yunda', 'YD7788990011', '2025-12-05', '南京市鼓楼区中山路18号');
INSERT INTO refunds VALUES
  ('2025112000008888', 89.00, 'paid', '2025-11-22'),
  ('2025113000005555', 259.00, 'reviewing', '2025-12-04'),
  ('2024112356789012', 349.00, 'approved', '2024-12-01');
