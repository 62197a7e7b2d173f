// Key Vault (RBAC, purge protection) holding the database password and the backup
// encryption key. The Web App reads them through its managed identity (see app.bicep).

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('PostgreSQL administrator password.')
@secure()
param databasePassword string

@description('Backup encryption key.')
@secure()
param backupEncryptionKey string

@description('Log Analytics workspace for audit logs.')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  #checkov:skip=CKV_AZURE_109:No virtual network here; access is limited by RBAC and audited to the workspace
  #checkov:skip=CKV_AZURE_189:Public network access is needed by App Service Key Vault references without VNet integration
  #checkov:skip=CKV2_AZURE_32:No private endpoint: there is no virtual network in this deployment
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource databasePasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  #checkov:skip=CKV_AZURE_41:The password is rotated by `emrops` on demand, not on a fixed expiry
  parent: vault
  name: 'database-password'
  properties: {
    value: databasePassword
    contentType: 'text/plain'
  }
}

resource backupKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  #checkov:skip=CKV_AZURE_41:Old backups must stay decryptable, so the key does not expire
  parent: vault
  name: 'backup-encryption-key'
  properties: {
    value: backupEncryptionKey
    contentType: 'application/octet-stream'
  }
}

resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-workspace'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

@description('Vault name (no secret values).')
output vaultName string = vault.name
