# ruff: noqa: E501  (DDL and rows written the way the frameworks write them)
"""Twelve SQLite databases shaped like the ones people migrate, built from DDL and rows here.

Each case has its schema and rows (one SQL script, run by SQLite itself), the app-level
queries whose answers must be the same on both sides (SQLite's spelling and PostgreSQL's),
a cast file when the data needs one, and the objects that may fail (only what docs/migrate.md
lists as intentionally unsupported).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

# n(i) = 1..50, for generated rows
N = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "


@dataclass
class Case:
    name: str
    script: str
    queries: list[tuple[str, str]]  # (SQLite SQL, PostgreSQL SQL): same rows expected
    casts: str = ""
    unsupported: list[str] = field(default_factory=list)  # failed objects allowed (exit 3)
    data: object = None  # callable(conn) adding rows SQL cannot write (bad bytes)

    def build(self, path: Path) -> Path:
        conn = sqlite3.connect(path)
        conn.executescript(self.script)
        if callable(self.data):
            self.data(conn)
        conn.commit()
        conn.close()
        return path


DJANGO = Case(
    "django",
    """CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" datetime NOT NULL);
CREATE TABLE "django_content_type" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app_label" varchar(100) NOT NULL, "model" varchar(100) NOT NULL);
CREATE UNIQUE INDEX "django_content_type_app_label_model_76bd3d3b_uniq" ON "django_content_type" ("app_label", "model");
CREATE TABLE "auth_permission" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "content_type_id" integer NOT NULL REFERENCES "django_content_type" ("id") DEFERRABLE INITIALLY DEFERRED, "codename" varchar(100) NOT NULL, "name" varchar(255) NOT NULL);
CREATE UNIQUE INDEX "auth_permission_content_type_id_codename_01ab375a_uniq" ON "auth_permission" ("content_type_id", "codename");
CREATE TABLE "auth_group" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(150) NOT NULL UNIQUE);
CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL, "date_joined" datetime NOT NULL, "first_name" varchar(150) NOT NULL);
CREATE TABLE "auth_user_groups" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED, "group_id" integer NOT NULL REFERENCES "auth_group" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX "auth_user_groups_user_id_group_id_94350c0c_uniq" ON "auth_user_groups" ("user_id", "group_id");
CREATE TABLE "django_admin_log" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "object_id" text NULL, "object_repr" varchar(200) NOT NULL, "action_flag" smallint unsigned NOT NULL CHECK ("action_flag" >= 0), "change_message" text NOT NULL, "content_type_id" integer NULL REFERENCES "django_content_type" ("id") DEFERRABLE INITIALLY DEFERRED, "user_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED, "action_time" datetime NOT NULL);
CREATE INDEX "django_admin_log_user_id_c564eba6" ON "django_admin_log" ("user_id");
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
CREATE TABLE "notes_document" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "uuid" char(32) NOT NULL UNIQUE, "title" varchar(200) NOT NULL, "meta" text NULL CHECK ((JSON_VALID("meta") OR "meta" IS NULL)), "owner_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED, "created" datetime NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES ('contenttypes', '0001_initial', '2024-01-02 10:00:00.123456'), ('auth', '0001_initial', '2024-01-02 10:00:01.5'), ('admin', '0001_initial', '2024-01-02 10:00:02');
INSERT INTO django_content_type (app_label, model) VALUES ('auth', 'user'), ('auth', 'group'), ('notes', 'document');
INSERT INTO auth_permission (content_type_id, codename, name) VALUES (1, 'add_user', 'Can add user'), (1, 'change_user', 'Can change user'), (3, 'view_document', 'Can view document');
INSERT INTO auth_group (name) VALUES ('editors'), ('viewers');
"""
    + N
    + """INSERT INTO auth_user (password, last_login, is_superuser, username, last_name, email, is_staff, is_active, date_joined, first_name)
SELECT 'pbkdf2_sha256$600000$salt$hash' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE '2024-03-0' || (i % 9 + 1) || ' 08:00:00' END, i = 1, 'user' || i, 'Last' || i, 'u' || i || '@example.org', i < 4, i % 7 <> 0, '2023-12-31 23:59:59', 'First' || i FROM n;
"""
    + N
    + """INSERT INTO auth_user_groups (user_id, group_id) SELECT i, 1 + i % 2 FROM n;
"""
    + N
    + """INSERT INTO django_admin_log (object_id, object_repr, action_flag, change_message, content_type_id, user_id, action_time) SELECT i, 'doc ' || i, 1 + i % 3, '[{"added": {}}]', 3, 1 + i % 4, '2024-02-01 12:00:0' || (i % 10) FROM n;
INSERT INTO django_session VALUES ('k1', 'eyJfYXV0aF91c2VyX2lkIjoiMSJ9:1', '2024-05-01 00:00:00'), ('k2', 'e30:1', '2024-05-02 00:00:00');
"""
    + N
    + """INSERT INTO notes_document (uuid, title, meta, owner_id, created) SELECT lower(hex(randomblob(16))), 'Doc ' || i, CASE WHEN i % 5 = 0 THEN NULL ELSE json_object('tags', json_array('a', 'b'), 'n', i, 'ok', json('true')) END, 1 + i % 10, '2024-04-01 09:30:00' FROM n;
""",
    [
        (
            "SELECT u.username, count(d.id) FROM auth_user u JOIN notes_document d "
            "ON d.owner_id = u.id GROUP BY u.username ORDER BY u.username",
            "SELECT u.username, count(d.id) FROM auth_user u JOIN notes_document d "
            "ON d.owner_id = u.id GROUP BY u.username ORDER BY u.username",
        ),
        (
            "SELECT count(*) FROM auth_user WHERE is_active AND is_staff",
            "SELECT count(*) FROM auth_user WHERE is_active AND is_staff",
        ),
    ],
)

RAILS = Case(
    "rails",
    """CREATE TABLE IF NOT EXISTS "schema_migrations" ("version" varchar NOT NULL PRIMARY KEY);
CREATE TABLE IF NOT EXISTS "ar_internal_metadata" ("key" varchar NOT NULL PRIMARY KEY, "value" varchar, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
CREATE TABLE IF NOT EXISTS "users" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "email" varchar DEFAULT '' NOT NULL, "name" varchar, "admin" boolean DEFAULT 0, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
CREATE UNIQUE INDEX "index_users_on_email" ON "users" ("email");
CREATE TABLE IF NOT EXISTS "posts" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "user_id" integer NOT NULL, "title" varchar, "body" text, "published" boolean DEFAULT 0 NOT NULL, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, CONSTRAINT "fk_rails_5b5ddfd518" FOREIGN KEY ("user_id") REFERENCES "users" ("id"));
CREATE INDEX "index_posts_on_user_id" ON "posts" ("user_id");
CREATE TABLE IF NOT EXISTS "comments" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "post_id" integer NOT NULL, "body" text, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, CONSTRAINT "fk_rails_2fd19c0db7" FOREIGN KEY ("post_id") REFERENCES "posts" ("id"));
INSERT INTO schema_migrations VALUES ('20240101000000'), ('20240102000000'), ('20240103000000');
INSERT INTO ar_internal_metadata VALUES ('environment', 'development', '2024-01-01 00:00:00.000001', '2024-01-01 00:00:00.000001'), ('schema_sha1', 'abc', '2024-01-01 00:00:00.5', '2024-01-01 00:00:00.5');
"""
    + N
    + """INSERT INTO users (email, name, admin, created_at, updated_at) SELECT 'u' || i || '@x.org', 'User ' || i, i = 1, '2024-01-0' || (i % 9 + 1) || ' 10:11:12.' || printf('%06d', i * 1234), '2024-02-01 00:00:00.000000' FROM n;
"""
    + N
    + """INSERT INTO posts (user_id, title, body, published, created_at, updated_at) SELECT 1 + i % 7, 'Post ' || i, 'Body of post ' || i, i % 2, '2024-03-01 00:00:00.000000', '2024-03-02 00:00:00.000000' FROM n;
"""
    + N
    + """INSERT INTO comments (post_id, body, created_at, updated_at) SELECT 1 + i % 13, 'c' || i, '2024-03-03 12:00:00.000000', '2024-03-03 12:00:00.000000' FROM n;
""",
    [
        (
            "SELECT u.email, count(c.id) FROM users u JOIN posts p ON p.user_id = u.id "
            "JOIN comments c ON c.post_id = p.id WHERE p.published GROUP BY u.email ORDER BY 1",
            "SELECT u.email, count(c.id) FROM users u JOIN posts p ON p.user_id = u.id "
            "JOIN comments c ON c.post_id = p.id WHERE p.published GROUP BY u.email ORDER BY 1",
        )
    ],
)

NORTHWIND = Case(
    "northwind",
    """CREATE TABLE [Categories] ([CategoryID] INTEGER PRIMARY KEY AUTOINCREMENT, [CategoryName] TEXT, [Description] TEXT, [Picture] BLOB);
CREATE TABLE [Customers] ([CustomerID] TEXT, [CompanyName] TEXT, [ContactName] TEXT, [City] TEXT, [Country] TEXT, PRIMARY KEY ("CustomerID"));
CREATE TABLE [Employees] ([EmployeeID] INTEGER PRIMARY KEY AUTOINCREMENT, [LastName] TEXT, [FirstName] TEXT, [Title] TEXT, [BirthDate] DATE, [HireDate] DATE, [City] TEXT, [Country] TEXT, [ReportsTo] INTEGER, FOREIGN KEY ([ReportsTo]) REFERENCES [Employees] ([EmployeeID]));
CREATE TABLE [Shippers] ([ShipperID] INTEGER PRIMARY KEY AUTOINCREMENT, [CompanyName] TEXT NOT NULL, [Phone] TEXT);
CREATE TABLE [Suppliers] ([SupplierID] INTEGER PRIMARY KEY AUTOINCREMENT, [CompanyName] TEXT NOT NULL, [City] TEXT, [Country] TEXT);
CREATE TABLE [Products] ([ProductID] INTEGER PRIMARY KEY AUTOINCREMENT, [ProductName] TEXT NOT NULL, [SupplierID] INTEGER, [CategoryID] INTEGER, [QuantityPerUnit] TEXT, [UnitPrice] NUMERIC DEFAULT 0, [UnitsInStock] INTEGER DEFAULT 0, [UnitsOnOrder] INTEGER DEFAULT 0, [ReorderLevel] INTEGER DEFAULT 0, [Discontinued] TEXT NOT NULL DEFAULT '0', FOREIGN KEY ([CategoryID]) REFERENCES [Categories] ([CategoryID]), FOREIGN KEY ([SupplierID]) REFERENCES [Suppliers] ([SupplierID]));
CREATE TABLE [Orders] ([OrderID] INTEGER PRIMARY KEY AUTOINCREMENT, [CustomerID] TEXT, [EmployeeID] INTEGER, [OrderDate] DATETIME, [RequiredDate] DATETIME, [ShippedDate] DATETIME, [ShipVia] INTEGER, [Freight] NUMERIC DEFAULT 0, [ShipName] TEXT, [ShipCity] TEXT, [ShipCountry] TEXT, FOREIGN KEY ([EmployeeID]) REFERENCES [Employees] ([EmployeeID]), FOREIGN KEY ([CustomerID]) REFERENCES [Customers] ([CustomerID]), FOREIGN KEY ([ShipVia]) REFERENCES [Shippers] ([ShipperID]));
CREATE TABLE [Order Details] ([OrderID] INTEGER NOT NULL, [ProductID] INTEGER NOT NULL, [UnitPrice] NUMERIC NOT NULL DEFAULT 0, [Quantity] INTEGER NOT NULL DEFAULT 1, [Discount] REAL NOT NULL DEFAULT 0, PRIMARY KEY ("OrderID","ProductID"), CHECK ([Discount]>=(0) AND [Discount]<=(1)), CHECK ([Quantity]>(0)), CHECK ([UnitPrice]>=(0)), FOREIGN KEY ([OrderID]) REFERENCES [Orders] ([OrderID]), FOREIGN KEY ([ProductID]) REFERENCES [Products] ([ProductID]));
INSERT INTO Categories (CategoryName, Description) VALUES ('Beverages', 'Soft drinks, coffees, teas'), ('Condiments', 'Sweet and savory sauces'), ('Confections', 'Desserts, candies'), ('Dairy Products', 'Cheeses'), ('Seafood', 'Seaweed and fish');
INSERT INTO Customers VALUES ('ALFKI', 'Alfreds Futterkiste', 'Maria Anders', 'Berlin', 'Germany'), ('ANATR', 'Ana Trujillo', 'Ana Trujillo', 'México D.F.', 'Mexico'), ('AROUT', 'Around the Horn', 'Thomas Hardy', 'London', 'UK'), ('BERGS', 'Berglunds snabbköp', 'Christina Berglund', 'Luleå', 'Sweden'), ('BLAUS', 'Blauer See', 'Hanna Moos', 'Mannheim', 'Germany');
INSERT INTO Employees (LastName, FirstName, Title, BirthDate, HireDate, City, Country, ReportsTo) VALUES ('Davolio', 'Nancy', 'Sales Representative', '1968-12-08', '2012-05-01', 'Seattle', 'USA', NULL), ('Fuller', 'Andrew', 'Vice President', '1972-02-19', '2012-08-14', 'Tacoma', 'USA', NULL), ('Leverling', 'Janet', 'Sales Representative', '1983-08-30', '2012-04-01', 'Kirkland', 'USA', 2), ('Buchanan', 'Steven', 'Sales Manager', '1975-03-04', '2013-10-17', 'London', 'UK', 2);
INSERT INTO Shippers (CompanyName, Phone) VALUES ('Speedy Express', '(503) 555-9831'), ('United Package', '(503) 555-3199'), ('Federal Shipping', '(503) 555-9931');
INSERT INTO Suppliers (CompanyName, City, Country) VALUES ('Exotic Liquids', 'London', 'UK'), ('New Orleans Cajun Delights', 'New Orleans', 'USA'), ('Tokyo Traders', 'Tokyo', 'Japan');
"""
    + N
    + """INSERT INTO Products (ProductName, SupplierID, CategoryID, QuantityPerUnit, UnitPrice, UnitsInStock, UnitsOnOrder, ReorderLevel, Discontinued) SELECT CASE i % 4 WHEN 0 THEN 'chai ' ELSE 'Chang ' END || i, 1 + i % 3, 1 + i % 5, (i % 12 + 1) || ' boxes', CASE WHEN i % 3 = 0 THEN i * 1.25 ELSE i * 2 END, i * 3 % 40, i % 4 * 10, i % 5, CASE WHEN i % 9 = 0 THEN '1' ELSE '0' END FROM n;
"""
    + N.replace("50", "40")
    + """INSERT INTO Orders (CustomerID, EmployeeID, OrderDate, RequiredDate, ShippedDate, ShipVia, Freight, ShipName, ShipCity, ShipCountry) SELECT CASE i % 5 WHEN 0 THEN 'ALFKI' WHEN 1 THEN 'ANATR' WHEN 2 THEN 'AROUT' WHEN 3 THEN 'BERGS' ELSE 'BLAUS' END, 1 + i % 4, date('2016-07-04', '+' || (i * 17) || ' days') || ' 00:00:00', date('2016-08-01', '+' || (i * 17) || ' days') || ' 00:00:00', CASE WHEN i % 6 = 0 THEN NULL ELSE date('2016-07-10', '+' || (i * 17) || ' days') || ' 00:00:00' END, 1 + i % 3, round(i * 3.37, 2), 'Ship ' || i, 'City ' || (i % 6), CASE i % 3 WHEN 0 THEN 'Germany' WHEN 1 THEN 'USA' ELSE 'UK' END FROM n;
"""
    + N
    + """INSERT INTO [Order Details] SELECT 1 + i % 40, 1 + (i * 7) % 50, CASE WHEN i % 2 = 0 THEN 18 ELSE 9.5 END, 1 + i % 12, CASE WHEN i % 4 = 0 THEN 0.05 ELSE 0 END FROM n;
"""
    + N
    + """INSERT OR IGNORE INTO [Order Details] SELECT 1 + (i * 3) % 40, 1 + (i * 11) % 50, 14, 2 + i % 5, 0.1 FROM n;
CREATE VIEW [Alphabetical list of products] AS SELECT Products.*, Categories.CategoryName FROM Categories INNER JOIN Products ON Categories.CategoryID = Products.CategoryID WHERE (((Products.Discontinued)=0));
CREATE VIEW [Current Product List] AS SELECT ProductID, ProductName FROM Products WHERE Discontinued=0;
CREATE VIEW [Customer and Suppliers by City] AS SELECT City, CompanyName, ContactName, 'Customers' AS Relationship FROM Customers UNION SELECT City, CompanyName, CompanyName, 'Suppliers' FROM Suppliers ORDER BY City, CompanyName;
CREATE VIEW [Order Details Extended] AS SELECT [Order Details].OrderID, [Order Details].ProductID, Products.ProductName, [Order Details].UnitPrice, [Order Details].Quantity, [Order Details].Discount, ([Order Details].UnitPrice*Quantity*(1-Discount)/100)*100 AS ExtendedPrice FROM Products JOIN [Order Details] ON Products.ProductID = [Order Details].ProductID;
CREATE VIEW [Order Subtotals] AS SELECT [Order Details].OrderID, Sum(([Order Details].UnitPrice*Quantity*(1-Discount)/100)*100) AS Subtotal FROM [Order Details] GROUP BY [Order Details].OrderID;
CREATE VIEW [Product Sales for 1997] AS SELECT Categories.CategoryName, Products.ProductName, Sum(([Order Details].UnitPrice*Quantity*(1-Discount)/100)*100) AS ProductSales FROM Categories JOIN Products ON Categories.CategoryID = Products.CategoryID JOIN [Order Details] ON Products.ProductID = [Order Details].ProductID JOIN [Orders] ON Orders.OrderID = [Order Details].OrderID WHERE Orders.ShippedDate BETWEEN DATETIME('2017-01-01') AND DATETIME('2017-12-31') GROUP BY Categories.CategoryName, Products.ProductName;
CREATE VIEW [Products Above Average Price] AS SELECT Products.ProductName, Products.UnitPrice FROM Products WHERE Products.UnitPrice > (SELECT AVG(UnitPrice) FROM Products);
CREATE VIEW [Products by Category] AS SELECT Categories.CategoryName, Products.ProductName, Products.QuantityPerUnit, Products.UnitsInStock, Products.Discontinued FROM Categories INNER JOIN Products ON Categories.CategoryID = Products.CategoryID WHERE Products.Discontinued <> 1;
CREATE VIEW [Quarterly Orders] AS SELECT DISTINCT Customers.CustomerID, Customers.CompanyName, Customers.City, Customers.Country FROM Customers JOIN Orders ON Customers.CustomerID = Orders.CustomerID WHERE Orders.OrderDate BETWEEN '2017-01-01' AND '2017-12-31';
CREATE VIEW [Sales by Category] AS SELECT Categories.CategoryID, Categories.CategoryName, Products.ProductName, Sum([Order Details Extended].ExtendedPrice) AS ProductSales FROM Categories JOIN Products ON Categories.CategoryID = Products.CategoryID JOIN [Order Details Extended] ON Products.ProductID = [Order Details Extended].ProductID JOIN Orders ON Orders.OrderID = [Order Details Extended].OrderID WHERE Orders.OrderDate BETWEEN '2016-01-01' AND '2017-12-31' GROUP BY Categories.CategoryID, Categories.CategoryName, Products.ProductName;
CREATE VIEW [Summary of Sales by Year] AS SELECT Orders.ShippedDate, Orders.OrderID, [Order Subtotals].Subtotal, strftime('%Y', ShippedDate) AS Year FROM Orders INNER JOIN [Order Subtotals] ON Orders.OrderID = [Order Subtotals].OrderID WHERE Orders.ShippedDate IS NOT NULL;
CREATE VIEW [Employee Names] AS SELECT EmployeeID, FirstName || ' ' || LastName AS Name, Title, (strftime('%Y', 'now') - strftime('%Y', BirthDate)) > 30 AS Over30, substr(FirstName, 1, 1) || '.' AS Initial FROM Employees;
CREATE VIEW [Stock Labels] AS SELECT ProductID, ProductName || ' (' || UnitsInStock || ' in stock)' AS Label, UnitsInStock + UnitsOnOrder AS Pipeline, QuantityPerUnit + 0 AS Boxes, printf('%.2f', UnitPrice) AS Price, iif(UnitsInStock < ReorderLevel, 'reorder', 'ok') AS Status FROM Products;
CREATE VIEW [Customers Like] AS SELECT CustomerID, CompanyName FROM Customers WHERE CompanyName LIKE 'a%' OR City GLOB 'L*';
CREATE VIEW [Order Months] AS SELECT strftime('%Y-%m', OrderDate) AS Month, count(*), total(Freight), group_concat(OrderID) AS Orders, avg(Freight) FROM Orders GROUP BY strftime('%Y-%m', OrderDate);
CREATE VIEW [Late Orders] AS SELECT OrderID, julianday(ShippedDate) - julianday(OrderDate) AS DaysToShip, date(OrderDate, '+1 month', 'start of month') AS NextMonth FROM Orders WHERE ShippedDate > RequiredDate OR ShippedDate IS NULL;
""",
    [
        (
            'SELECT c.CategoryName, round(sum(d.UnitPrice * d.Quantity * (1 - d.Discount)), 2) FROM "Order Details" d JOIN Products p ON p.ProductID = d.ProductID JOIN Categories c ON c.CategoryID = p.CategoryID GROUP BY c.CategoryName ORDER BY 1',
            'SELECT c."CategoryName", round(sum(d."UnitPrice" * d."Quantity" * (1 - d."Discount"))::numeric, 2) FROM "Order Details" d JOIN "Products" p ON p."ProductID" = d."ProductID" JOIN "Categories" c ON c."CategoryID" = p."CategoryID" GROUP BY c."CategoryName" ORDER BY 1',
        )
    ],
)

DVDRENTAL = Case(
    "dvdrental",
    """CREATE TABLE language (language_id SMALLINT NOT NULL, name CHAR(20) NOT NULL, last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (language_id));
CREATE TABLE actor (actor_id numeric NOT NULL, first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (actor_id));
CREATE INDEX idx_actor_last_name ON actor(last_name);
CREATE TABLE category (category_id SMALLINT NOT NULL, name VARCHAR(25) NOT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (category_id));
CREATE TABLE film (film_id int NOT NULL, title VARCHAR(255) NOT NULL, description BLOB SUB_TYPE TEXT DEFAULT NULL, release_year VARCHAR(4) DEFAULT NULL, language_id SMALLINT NOT NULL, rental_duration SMALLINT DEFAULT 3 NOT NULL, rental_rate DECIMAL(4,2) DEFAULT 4.99 NOT NULL, length SMALLINT DEFAULT NULL, rating VARCHAR(10) DEFAULT 'G', last_update TIMESTAMP NOT NULL, PRIMARY KEY (film_id), CONSTRAINT CHECK_special_rating CHECK(rating in ('G','PG','PG-13','R','NC-17')), CONSTRAINT fk_film_language FOREIGN KEY (language_id) REFERENCES language (language_id));
CREATE TABLE film_actor (actor_id INT NOT NULL, film_id INT NOT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (actor_id, film_id), CONSTRAINT fk_film_actor_actor FOREIGN KEY (actor_id) REFERENCES actor (actor_id) ON DELETE NO ACTION ON UPDATE CASCADE, CONSTRAINT fk_film_actor_film FOREIGN KEY (film_id) REFERENCES film (film_id) ON DELETE NO ACTION ON UPDATE CASCADE);
CREATE TABLE film_category (film_id INT NOT NULL, category_id SMALLINT NOT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (film_id, category_id));
CREATE TABLE customer (customer_id INT NOT NULL, store_id INT NOT NULL, first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL, email VARCHAR(50) DEFAULT NULL, active CHAR(1) DEFAULT 'Y' NOT NULL, create_date TIMESTAMP NOT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (customer_id));
CREATE TABLE rental (rental_id INT NOT NULL, rental_date TIMESTAMP NOT NULL, film_id INT NOT NULL, customer_id INT NOT NULL, return_date TIMESTAMP DEFAULT NULL, last_update TIMESTAMP NOT NULL, PRIMARY KEY (rental_id), CONSTRAINT fk_rental_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id));
CREATE TABLE payment (payment_id int NOT NULL, customer_id INT NOT NULL, rental_id INT DEFAULT NULL, amount DECIMAL(5,2) NOT NULL, payment_date TIMESTAMP NOT NULL, last_update TIMESTAMP, PRIMARY KEY (payment_id));
CREATE TABLE payment_log (id INTEGER PRIMARY KEY, payment_id INT, amount DECIMAL(5,2), logged TIMESTAMP);
CREATE TABLE customer_stats (customer_id INT PRIMARY KEY, rentals INT NOT NULL DEFAULT 0);
CREATE TRIGGER actor_trigger_ai AFTER INSERT ON actor BEGIN UPDATE actor SET last_update = DATETIME('NOW') WHERE rowid = new.rowid; END;
CREATE TRIGGER actor_trigger_au AFTER UPDATE ON actor BEGIN UPDATE actor SET last_update = DATETIME('NOW') WHERE rowid = new.rowid; END;
CREATE TRIGGER category_trigger_au AFTER UPDATE ON category BEGIN UPDATE category SET last_update = DATETIME('NOW') WHERE rowid = new.rowid; END;
CREATE TRIGGER film_trigger_au AFTER UPDATE ON film BEGIN UPDATE film SET last_update = DATETIME('NOW') WHERE rowid = new.rowid; END;
CREATE TRIGGER customer_trigger_au AFTER UPDATE OF first_name, last_name, email ON customer FOR EACH ROW BEGIN UPDATE customer SET last_update = CURRENT_TIMESTAMP WHERE customer_id = NEW.customer_id; END;
CREATE TRIGGER payment_trigger_ai AFTER INSERT ON payment BEGIN INSERT INTO payment_log (payment_id, amount, logged) VALUES (NEW.payment_id, NEW.amount, CURRENT_TIMESTAMP); END;
CREATE TRIGGER rental_count_ai AFTER INSERT ON rental BEGIN INSERT OR IGNORE INTO customer_stats (customer_id, rentals) VALUES (NEW.customer_id, 0); UPDATE customer_stats SET rentals = rentals + 1 WHERE customer_id = NEW.customer_id; END;
CREATE TRIGGER rental_count_ad AFTER DELETE ON rental BEGIN UPDATE customer_stats SET rentals = rentals - 1 WHERE customer_id = OLD.customer_id; END;
CREATE TRIGGER film_delete_cascade BEFORE DELETE ON film BEGIN DELETE FROM film_actor WHERE film_id = OLD.film_id; DELETE FROM film_category WHERE film_id = OLD.film_id; END;
CREATE TRIGGER payment_positive BEFORE INSERT ON payment WHEN NEW.amount < 0 BEGIN SELECT RAISE(ABORT, 'payment amount must not be negative'); END;
INSERT INTO language VALUES (1, 'English', '2020-02-15 10:02:19'), (2, 'Italian', '2020-02-15 10:02:19');
"""
    + N
    + """INSERT INTO actor SELECT i, 'FIRST' || i, 'LAST' || (i % 17), '2020-02-15 09:34:33' FROM n;
"""
    + N.replace("50", "16")
    + """INSERT INTO category SELECT i, 'Category ' || i, '2020-02-15 09:46:27' FROM n;
"""
    + N
    + """INSERT INTO film SELECT i, 'FILM TITLE ' || i, 'A film about ' || i, '2006', 1 + i % 2, 3 + i % 5, CASE WHEN i % 3 = 0 THEN 0.99 WHEN i % 3 = 1 THEN 2.99 ELSE 4.99 END, 40 + i * 3, CASE i % 5 WHEN 0 THEN 'G' WHEN 1 THEN 'PG' WHEN 2 THEN 'PG-13' WHEN 3 THEN 'R' ELSE 'NC-17' END, '2020-02-15 10:03:42' FROM n;
"""
    + N
    + """INSERT INTO film_actor SELECT 1 + i % 20, i, '2020-02-15 10:05:03' FROM n;
"""
    + N
    + """INSERT INTO film_category SELECT i, 1 + i % 16, '2020-02-15 10:07:09' FROM n;
"""
    + N.replace("50", "20")
    + """INSERT INTO customer SELECT i, 1 + i % 2, 'Cust' || i, 'Omer' || i, 'c' || i || '@sakilacustomer.org', CASE WHEN i % 6 = 0 THEN 'N' ELSE 'Y' END, '2020-02-14 22:04:36', '2020-02-15 09:57:20' FROM n;
"""
    + N
    + """INSERT INTO rental SELECT i, '2005-05-24 22:53:' || printf('%02d', i), 1 + i % 50, 1 + i % 20, CASE WHEN i % 4 = 0 THEN NULL ELSE '2005-05-26 22:04:30' END, '2020-02-15 21:30:53' FROM n;
"""
    + N
    + """INSERT INTO payment SELECT i, 1 + i % 20, i, CASE WHEN i % 2 = 0 THEN 2.99 ELSE 0.99 END, '2005-05-25 11:30:37', '2020-02-15 22:12:30' FROM n;
CREATE VIEW customer_list AS SELECT cu.customer_id AS ID, cu.first_name || ' ' || cu.last_name AS name, CASE WHEN cu.active = 1 THEN 'active' ELSE '' END AS notes, cu.store_id AS SID FROM customer AS cu;
CREATE VIEW film_list AS SELECT film.film_id AS FID, film.title AS title, film.description AS description, category.name AS category, film.rental_rate AS price, film.length AS length, film.rating AS rating, group_concat(actor.first_name || ' ' || actor.last_name, ', ') AS actors FROM category LEFT JOIN film_category ON category.category_id = film_category.category_id LEFT JOIN film ON film_category.film_id = film.film_id JOIN film_actor ON film.film_id = film_actor.film_id JOIN actor ON film_actor.actor_id = actor.actor_id GROUP BY film.film_id, film.title, film.description, category.name, film.rental_rate, film.length, film.rating;
CREATE VIEW sales_by_store AS SELECT c.store_id, SUM(p.amount) AS total_sales FROM payment AS p INNER JOIN customer AS c ON p.customer_id = c.customer_id GROUP BY c.store_id;
""",
    [
        (
            "SELECT c.store_id, count(*), sum(p.amount) FROM payment p JOIN customer c ON c.customer_id = p.customer_id GROUP BY c.store_id ORDER BY 1",
            "SELECT c.store_id, count(*), sum(p.amount) FROM payment p JOIN customer c ON c.customer_id = p.customer_id GROUP BY c.store_id ORDER BY 1",
        )
    ],
)

CHINOOK = Case(
    "chinook",
    """CREATE TABLE [Artist] ([ArtistId] INTEGER NOT NULL, [Name] NVARCHAR(120), CONSTRAINT [PK_Artist] PRIMARY KEY ([ArtistId]));
CREATE TABLE [Album] ([AlbumId] INTEGER NOT NULL, [Title] NVARCHAR(160) NOT NULL, [ArtistId] INTEGER NOT NULL, CONSTRAINT [PK_Album] PRIMARY KEY ([AlbumId]), FOREIGN KEY ([ArtistId]) REFERENCES [Artist] ([ArtistId]) ON DELETE NO ACTION ON UPDATE NO ACTION);
CREATE TABLE [Genre] ([GenreId] INTEGER NOT NULL, [Name] NVARCHAR(120), CONSTRAINT [PK_Genre] PRIMARY KEY ([GenreId]));
CREATE TABLE [MediaType] ([MediaTypeId] INTEGER NOT NULL, [Name] NVARCHAR(120), CONSTRAINT [PK_MediaType] PRIMARY KEY ([MediaTypeId]));
CREATE TABLE [Track] ([TrackId] INTEGER NOT NULL, [Name] NVARCHAR(200) NOT NULL, [AlbumId] INTEGER, [MediaTypeId] INTEGER NOT NULL, [GenreId] INTEGER, [Composer] NVARCHAR(220), [Milliseconds] INTEGER NOT NULL, [Bytes] INTEGER, [UnitPrice] NUMERIC(10,2) NOT NULL, CONSTRAINT [PK_Track] PRIMARY KEY ([TrackId]), FOREIGN KEY ([AlbumId]) REFERENCES [Album] ([AlbumId]), FOREIGN KEY ([GenreId]) REFERENCES [Genre] ([GenreId]), FOREIGN KEY ([MediaTypeId]) REFERENCES [MediaType] ([MediaTypeId]));
CREATE TABLE [Employee] ([EmployeeId] INTEGER NOT NULL, [LastName] NVARCHAR(20) NOT NULL, [FirstName] NVARCHAR(20) NOT NULL, [Title] NVARCHAR(30), [ReportsTo] INTEGER, [HireDate] DATETIME, [Email] NVARCHAR(60), CONSTRAINT [PK_Employee] PRIMARY KEY ([EmployeeId]), FOREIGN KEY ([ReportsTo]) REFERENCES [Employee] ([EmployeeId]));
CREATE TABLE [Customer] ([CustomerId] INTEGER NOT NULL, [FirstName] NVARCHAR(40) NOT NULL, [LastName] NVARCHAR(20) NOT NULL, [Country] NVARCHAR(40), [Email] NVARCHAR(60) NOT NULL, [SupportRepId] INTEGER, CONSTRAINT [PK_Customer] PRIMARY KEY ([CustomerId]), FOREIGN KEY ([SupportRepId]) REFERENCES [Employee] ([EmployeeId]));
CREATE TABLE [Invoice] ([InvoiceId] INTEGER NOT NULL, [CustomerId] INTEGER NOT NULL, [InvoiceDate] DATETIME NOT NULL, [BillingCountry] NVARCHAR(40), [Total] NUMERIC(10,2) NOT NULL, CONSTRAINT [PK_Invoice] PRIMARY KEY ([InvoiceId]), FOREIGN KEY ([CustomerId]) REFERENCES [Customer] ([CustomerId]));
CREATE TABLE [InvoiceLine] ([InvoiceLineId] INTEGER NOT NULL, [InvoiceId] INTEGER NOT NULL, [TrackId] INTEGER NOT NULL, [UnitPrice] NUMERIC(10,2) NOT NULL, [Quantity] INTEGER NOT NULL, CONSTRAINT [PK_InvoiceLine] PRIMARY KEY ([InvoiceLineId]), FOREIGN KEY ([InvoiceId]) REFERENCES [Invoice] ([InvoiceId]), FOREIGN KEY ([TrackId]) REFERENCES [Track] ([TrackId]));
CREATE TABLE [Playlist] ([PlaylistId] INTEGER NOT NULL, [Name] NVARCHAR(120), CONSTRAINT [PK_Playlist] PRIMARY KEY ([PlaylistId]));
CREATE TABLE [PlaylistTrack] ([PlaylistId] INTEGER NOT NULL, [TrackId] INTEGER NOT NULL, CONSTRAINT [PK_PlaylistTrack] PRIMARY KEY ([PlaylistId], [TrackId]), FOREIGN KEY ([PlaylistId]) REFERENCES [Playlist] ([PlaylistId]), FOREIGN KEY ([TrackId]) REFERENCES [Track] ([TrackId]));
CREATE INDEX [IFK_TrackAlbumId] ON [Track] ([AlbumId]);
INSERT INTO Genre VALUES (1, 'Rock'), (2, 'Jazz'), (3, 'Metal'), (4, 'Alternative & Punk');
INSERT INTO MediaType VALUES (1, 'MPEG audio file'), (2, 'Protected AAC audio file');
INSERT INTO Playlist VALUES (1, 'Music'), (2, 'Movies'), (3, 'Grunge');
INSERT INTO Employee VALUES (1, 'Adams', 'Andrew', 'General Manager', NULL, '2002-08-14 00:00:00', 'andrew@chinookcorp.com'), (2, 'Edwards', 'Nancy', 'Sales Manager', 1, '2002-05-01 00:00:00', 'nancy@chinookcorp.com'), (3, 'Peacock', 'Jane', 'Sales Support Agent', 2, '2002-04-01 00:00:00', 'jane@chinookcorp.com');
"""
    + N.replace("50", "10")
    + """INSERT INTO Artist SELECT i, 'Artist ' || char(64 + i) FROM n;
"""
    + N.replace("50", "20")
    + """INSERT INTO Album SELECT i, 'Album ' || i, 1 + i % 10 FROM n;
"""
    + N
    + """INSERT INTO Track SELECT i, 'Track ' || i, 1 + i % 20, 1 + i % 2, 1 + i % 4, CASE WHEN i % 3 = 0 THEN NULL ELSE 'Composer ' || (i % 7) END, 200000 + i * 1013, 6000000 + i * 77, CASE WHEN i % 5 = 0 THEN 1.99 ELSE 0.99 END FROM n;
"""
    + N
    + """INSERT INTO PlaylistTrack SELECT 1 + i % 3, i FROM n;
"""
    + N.replace("50", "15")
    + """INSERT INTO Customer SELECT i, 'Given' || i, 'Family' || i, CASE i % 4 WHEN 0 THEN 'Brazil' WHEN 1 THEN 'Canada' WHEN 2 THEN 'USA' ELSE 'France' END, 'c' || i || '@mail.example', 2 + i % 2 FROM n;
"""
    + N.replace("50", "30")
    + """INSERT INTO Invoice SELECT i, 1 + i % 15, '2021-' || printf('%02d', 1 + i % 12) || '-0' || (1 + i % 9) || ' 00:00:00', CASE i % 4 WHEN 0 THEN 'Brazil' WHEN 1 THEN 'Canada' WHEN 2 THEN 'USA' ELSE 'France' END, 0 FROM n;
"""
    + N
    + """INSERT INTO InvoiceLine SELECT i, 1 + i % 30, 1 + (i * 7) % 50, CASE WHEN i % 5 = 0 THEN 1.99 ELSE 0.99 END, 1 + i % 2 FROM n;
UPDATE Invoice SET Total = (SELECT round(sum(UnitPrice * Quantity), 2) FROM InvoiceLine WHERE InvoiceLine.InvoiceId = Invoice.InvoiceId);
""",
    [
        (
            "SELECT g.Name, sum(il.UnitPrice * il.Quantity), count(DISTINCT i.CustomerId) FROM InvoiceLine il JOIN Track t ON t.TrackId = il.TrackId JOIN Genre g ON g.GenreId = t.GenreId JOIN Invoice i ON i.InvoiceId = il.InvoiceId GROUP BY g.Name ORDER BY 1",
            'SELECT g."Name", sum(il."UnitPrice" * il."Quantity"), count(DISTINCT i."CustomerId") FROM "InvoiceLine" il JOIN "Track" t ON t."TrackId" = il."TrackId" JOIN "Genre" g ON g."GenreId" = t."GenreId" JOIN "Invoice" i ON i."InvoiceId" = il."InvoiceId" GROUP BY g."Name" ORDER BY 1',
        ),
        (
            "SELECT e.LastName, m.LastName FROM Employee e LEFT JOIN Employee m ON m.EmployeeId = e.ReportsTo ORDER BY 1",
            'SELECT e."LastName", m."LastName" FROM "Employee" e LEFT JOIN "Employee" m ON m."EmployeeId" = e."ReportsTo" ORDER BY 1',
        ),
    ],
)

MOBILE = Case(
    "mobile",
    """CREATE TABLE account (id TEXT PRIMARY KEY, name TEXT NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE note (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL REFERENCES account(id), title TEXT NOT NULL, body TEXT, words INTEGER GENERATED ALWAYS AS (length(body) - length(replace(body, ' ', '')) + 1) VIRTUAL, title_lc TEXT GENERATED ALWAYS AS (lower(title)) STORED, pinned INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE tag (note_id INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (note_id, tag)) STRICT, WITHOUT ROWID;
CREATE TABLE kv (k TEXT PRIMARY KEY, v ANY) STRICT;
CREATE VIRTUAL TABLE note_fts USING fts5(title, body);
CREATE TRIGGER note_fts_ai AFTER INSERT ON note BEGIN INSERT INTO note_fts (rowid, title, body) VALUES (new.id, new.title, new.body); END;
CREATE TRIGGER note_fts_ad AFTER DELETE ON note BEGIN DELETE FROM note_fts WHERE rowid = old.id; END;
CREATE TRIGGER note_fts_au AFTER UPDATE OF title, body ON note BEGIN UPDATE note_fts SET title = new.title, body = new.body WHERE rowid = old.id; END;
INSERT INTO account VALUES ('a1', 'Ann', 1700000000), ('b2', 'Bob', 1700000100);
"""
    + N
    + """INSERT INTO note (id, account_id, title, body, pinned) SELECT i, CASE WHEN i % 2 = 0 THEN 'a1' ELSE 'b2' END, 'Title ' || i, 'some words in note number ' || i, i % 5 = 0 FROM n;
"""
    + N
    + """INSERT INTO tag SELECT i, CASE WHEN i % 3 = 0 THEN 'work' ELSE 'home' END FROM n;
INSERT INTO kv VALUES ('theme', 'dark'), ('launches', 42), ('ratio', 0.5);
""",
    [
        (
            "SELECT a.name, count(*), sum(n.words), sum(n.pinned) FROM note n JOIN account a ON a.id = n.account_id GROUP BY a.name ORDER BY 1",
            "SELECT a.name, count(*), sum(n.words), sum(n.pinned::int) FROM note n JOIN account a ON a.id = n.account_id GROUP BY a.name ORDER BY 1",
        ),
        (
            "SELECT title FROM note_fts WHERE body LIKE '%number 1%' ORDER BY title",
            "SELECT title FROM note_fts WHERE body LIKE '%number 1%' ORDER BY title",
        ),
    ],
    casts='[kv.v]\ntype = "text"\n',
)

IOT = Case(
    "iot",
    """CREATE TABLE device (id INTEGER PRIMARY KEY, serial TEXT UNIQUE NOT NULL, lat REAL, lon REAL, installed DATE);
CREATE TABLE reading (id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL REFERENCES device(id), ts INTEGER NOT NULL, temp_c REAL, humidity NUMERIC(4,1), pressure NUMERIC, voltage DOUBLE, ok BOOLEAN NOT NULL DEFAULT 1);
CREATE INDEX reading_device_ts ON reading (device_id, ts DESC);
CREATE VIEW daily AS SELECT device_id, date(ts, 'unixepoch') AS day, round(avg(temp_c), 3) AS avg_temp, max(humidity) AS max_hum, count(*) AS n FROM reading WHERE ok = 1 GROUP BY device_id, date(ts, 'unixepoch');
INSERT INTO device VALUES (1, 'SN-001', 52.52, 13.405, '2023-01-15'), (2, 'SN-002', -33.8688, 151.2093, '2023-02-01'), (3, 'SN-003', NULL, NULL, NULL);
"""
    + N
    + """INSERT INTO reading (device_id, ts, temp_c, humidity, pressure, voltage, ok) SELECT 1 + i % 3, 1700000000 + i * 7200, 20.0 + i * 0.1 - (i % 7) * 0.37, round(40 + (i % 11) * 1.3, 1), CASE WHEN i % 2 = 0 THEN 1013 ELSE 1013.25 + i / 100.0 END, 3.3 - i * 1e-3, i % 13 <> 0 FROM n;
INSERT INTO reading (device_id, ts, temp_c, humidity, pressure, voltage) VALUES (1, 1700500000, 0.1 + 0.2, 99.9, 1e-10, 1.7976931348623157e308), (2, 1700500001, -0.0, 0, 123456789.123456789, 5e-324);
""",
    [
        (
            "SELECT d.serial, count(*), max(r.temp_c), min(r.voltage), sum(r.humidity) FROM reading r JOIN device d ON d.id = r.device_id GROUP BY d.serial ORDER BY 1",
            "SELECT d.serial, count(*), max(r.temp_c), min(r.voltage), sum(r.humidity) FROM reading r JOIN device d ON d.id = r.device_id GROUP BY d.serial ORDER BY 1",
        )
    ],
)

MIXED = Case(
    "mixed",
    """CREATE TABLE item (id INTEGER PRIMARY KEY, code, qty INTEGER, price, label TEXT, created DATETIME);
CREATE TABLE tally (item_id INTEGER REFERENCES item(id), n);
INSERT INTO item VALUES (1, 'A-1', 5, 9.99, 'one', '2024-01-01 10:00:00'), (2, 17, 3, 10, 'two', '2024-01-02T11:00:00Z'), (3, x'00ff', NULL, '12.50', 'three', '2024-01-03 12:00:00.123'), (4, 4.5, 7, NULL, NULL, NULL);
INSERT INTO tally VALUES (1, 1), (1, '2'), (2, 3.5), (3, NULL), (4, 'x');
CREATE VIEW item_totals AS SELECT i.id, i.label, sum(t.n) AS total, count(t.n) AS cnt, typeof(i.qty) AS qtype FROM item i LEFT JOIN tally t ON t.item_id = i.id GROUP BY i.id, i.label;
""",
    [
        (
            "SELECT i.label, count(t.item_id) FROM item i JOIN tally t ON t.item_id = i.id GROUP BY i.label ORDER BY 1",
            "SELECT i.label, count(t.item_id) FROM item i JOIN tally t ON t.item_id = i.id GROUP BY i.label ORDER BY 1",
        )
    ],
    casts='[item.code]\ntype = "bytea"\n[item.price]\ntype = "text"\n[tally.n]\ntype = "text"\n',
)

L63 = "customer_relationship_management_opportunity_pipeline_stage_history"
LONG = Case(
    "long_names",
    f"""CREATE TABLE {L63}_2023 (id INTEGER PRIMARY KEY, {L63}_value_before TEXT, {L63}_value_after TEXT);
CREATE TABLE {L63}_2024 (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES {L63}_2023(id), {L63}_value_before TEXT);
CREATE INDEX {L63}_2023_idx_before ON {L63}_2023 ({L63}_value_before);
CREATE INDEX {L63}_2023_idx_after ON {L63}_2023 ({L63}_value_after);
CREATE VIEW {L63}_summary AS SELECT a.id, a.{L63}_value_after, b.{L63}_value_before FROM {L63}_2023 a JOIN {L63}_2024 b ON b.parent_id = a.id;
"""
    + N.replace("50", "10")
    + f"""INSERT INTO {L63}_2023 SELECT i, 'b' || i, 'a' || i FROM n;
"""
    + N.replace("50", "10")
    + f"""INSERT INTO {L63}_2024 SELECT i, 11 - i, 'x' || i FROM n;
""",
    [],  # the queries name shortened tables: see test_long_names_are_reachable
)

BAD_BYTES = Case(
    "bad_bytes",
    """CREATE TABLE message (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, body TEXT, raw BLOB);
CREATE TABLE sender (name TEXT PRIMARY KEY, country TEXT);
INSERT INTO sender VALUES ('ann', 'DE'), ('bob', 'FR');
""",
    [
        (
            "SELECT s.country, count(*) FROM message m JOIN sender s ON s.name = m.sender GROUP BY s.country ORDER BY 1",
            "SELECT s.country, count(*) FROM message m JOIN sender s ON s.name = m.sender GROUP BY s.country ORDER BY 1",
        )
    ],
    casts='[message.body]\ntype = "bytea"\n',
    data=lambda conn: (
        conn.executemany(
            "INSERT INTO message VALUES (?, ?, ?, ?)",
            [
                (1, "ann", "plain", b"\x00\x01"),
                (2, "bob", "nul\x00inside", None),
                (3, "ann", b"caf\xe9 latin-1".decode("latin-1").encode("latin-1"), b"\xff"),
                (4, "bob", "ok \u00e9\u4e2d", b""),
            ],
        )
        or conn.execute(
            "UPDATE message SET body = CAST(x'636166e9206c6174696e2d31' AS TEXT) WHERE id = 3"
        )
    ),
)

KEYWORDS = Case(
    "keywords",
    """CREATE TABLE "user" ("select" INTEGER PRIMARY KEY, "from" TEXT, "where" TEXT, "order" INTEGER, "group" TEXT, "Mixed Case" TEXT, "desc" TEXT, "limit" REAL);
CREATE TABLE "order" ("id" INTEGER PRIMARY KEY, "user" INTEGER REFERENCES "user"("select"), "table" TEXT, "check" INTEGER CHECK ("check" >= 0), "default" TEXT DEFAULT 'x');
CREATE INDEX "index" ON "order" ("table");
CREATE VIEW "join" AS SELECT u."select", u."from", o."table", o."check" * 2 AS "Double Check", count(*) OVER (PARTITION BY u."group") AS "Group Size" FROM "user" u JOIN "order" o ON o."user" = u."select";
"""
    + N.replace("50", "12")
    + """INSERT INTO "user" SELECT i, 'from' || i, 'where' || i, i * 2, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END, 'MiXeD ' || i, 'd', i / 3.0 FROM n;
"""
    + N.replace("50", "24")
    + """INSERT INTO "order" ("id", "user", "table", "check") SELECT i, 1 + i % 12, 't' || (i % 4), i FROM n;
""",
    [
        (
            'SELECT u."group", count(*), sum(o."check") FROM "user" u JOIN "order" o ON o."user" = u."select" GROUP BY u."group" ORDER BY 1',
            'SELECT u."group", count(*), sum(o."check") FROM "user" u JOIN "order" o ON o."user" = u."select" GROUP BY u."group" ORDER BY 1',
        )
    ],
)

NO_PK = Case(
    "no_pk",
    """CREATE TABLE event_log (at TEXT, kind TEXT, payload TEXT, amount REAL);
CREATE TABLE tags (name TEXT, weight INTEGER);
CREATE INDEX event_kind ON event_log (kind);
"""
    + N
    + """INSERT INTO event_log SELECT '2024-01-01 00:00:' || printf('%02d', i % 60), CASE WHEN i % 3 = 0 THEN 'login' ELSE 'view' END, json_object('i', i), i * 0.5 FROM n;
INSERT INTO event_log SELECT * FROM event_log LIMIT 5;
INSERT INTO tags VALUES ('login', 2), ('view', 1), ('view', 1), (NULL, NULL);
""",
    [
        (
            "SELECT e.kind, count(*), sum(e.amount * t.weight) FROM event_log e JOIN tags t ON t.name = e.kind GROUP BY e.kind ORDER BY 1",
            "SELECT e.kind, count(*), sum(e.amount * t.weight) FROM event_log e JOIN tags t ON t.name = e.kind GROUP BY e.kind ORDER BY 1",
        )
    ],
)

CASES = [
    DJANGO,
    RAILS,
    NORTHWIND,
    DVDRENTAL,
    CHINOOK,
    MOBILE,
    IOT,
    MIXED,
    LONG,
    BAD_BYTES,
    KEYWORDS,
    NO_PK,
]
